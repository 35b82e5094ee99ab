-- An amount in minor units as the contract writes it (`Money.text`): all the currency's minor digits, a point only
-- where it has some. For the workers' shopper timelines (`*_shopper_timeline`), which format their own facts; the
-- currencies without two minor digits are `Money.exponents`, and a test holds the two together.
CREATE OR REPLACE FUNCTION rapport_money_text(minor_units bigint, currency text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT round(minor_units::numeric / 10::numeric ^ digits, digits)::text
    FROM (SELECT CASE
        WHEN currency IN ('BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX', 'UYI', 'VND', 'VUV', 'XAF', 'XOF', 'XPF') THEN 0
        WHEN currency IN ('BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND') THEN 3
        WHEN currency IN ('CLF', 'UYW') THEN 4
        ELSE 2 END AS digits) e
$$;

-- A moment as `Date.rfc3339` writes it: UTC, milliseconds rounded to the nearest.
CREATE OR REPLACE FUNCTION rapport_rfc3339(moment timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_char(date_trunc('milliseconds', moment + interval '500 microseconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;
