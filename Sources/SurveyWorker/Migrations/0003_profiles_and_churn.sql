-- Responses belong to the shared shopper (rapport_shoppers), kept exactly as submitted, append-only: one row per
-- submission (message), never updated.
ALTER TABLE survey_responses ADD COLUMN shopper_id bigint;
CREATE INDEX survey_responses_by_shopper_id ON survey_responses (store_id, shopper_id, submitted_at);

-- The profile derived from a shopper's responses, oldest first, a later answer overriding an earlier one key by key
-- (habits key by key too); keys the contract does not name are kept in `other`.
CREATE TABLE survey_profiles (
    store_id      text        NOT NULL,
    shopper_id    bigint      NOT NULL,
    interests     text[],
    habits        jsonb       NOT NULL DEFAULT '{}',
    income_band   text,
    channels      text[],
    other         jsonb       NOT NULL DEFAULT '{}',
    responses     integer     NOT NULL,
    first_at      timestamptz NOT NULL,
    last_at       timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, shopper_id)
);

-- Churn risk of every shopper with a completed order, as last scored (by the periodic re-scoring), and the lapse a
-- win-back was scheduled for: the last order it follows (a newer order ends the lapse).
CREATE TABLE survey_churn (
    store_id           text             NOT NULL,
    shopper_id         bigint           NOT NULL,
    orders             integer          NOT NULL,
    first_order_at     timestamptz      NOT NULL,
    last_order_at      timestamptz      NOT NULL,
    expected_gap_days  double precision NOT NULL,
    overdue            double precision NOT NULL,
    risk               double precision NOT NULL,
    band               text             NOT NULL CHECK (band IN ('low', 'medium', 'high')),
    scored_at          timestamptz      NOT NULL,
    win_back_after     timestamptz,
    PRIMARY KEY (store_id, shopper_id)
);

-- SurveyWorker's part of a merge: the anonymous shopper's responses become the known shopper's; the profile is
-- derived again from all of them at the shopper's next survey (until then the known shopper's stands, else the
-- anonymous one's moves); churn is scored again at the next pass.
CREATE FUNCTION survey_merge_shopper(p_store text, p_from bigint, p_into bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE survey_responses SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
    UPDATE survey_profiles SET shopper_id = p_into
    WHERE store_id = p_store AND shopper_id = p_from
      AND NOT EXISTS (SELECT 1 FROM survey_profiles WHERE store_id = p_store AND shopper_id = p_into);
    DELETE FROM survey_profiles WHERE store_id = p_store AND shopper_id = p_from;
    DELETE FROM survey_churn WHERE store_id = p_store AND shopper_id = p_from;
$$;

-- Erasure reaches every answer (free text included), the profile and the churn score.
CREATE OR REPLACE FUNCTION survey_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := rapport_erased_shoppers(p_store, p_contact, p_keys);
BEGIN
    DELETE FROM survey_responses WHERE store_id = p_store AND (shopper_key = ANY(p_keys) OR shopper_id = ANY(ids));
    DELETE FROM survey_profiles WHERE store_id = p_store AND shopper_id = ANY(ids);
    DELETE FROM survey_churn WHERE store_id = p_store AND shopper_id = ANY(ids);
END;
$$;
