-- SurveyWorker's part of a shopper's timeline (`explain`; the shape is CaptureWorker's 0008): the churn risk as last
-- scored and the profile (header lines), and each survey response.
CREATE OR REPLACE FUNCTION survey_shopper_timeline(p_store text, p_shopper bigint, p_email text)
RETURNS TABLE (at timestamptz, rank integer, line text)
LANGUAGE sql STABLE AS $$
    SELECT NULL::timestamptz, 0,
           'churn: risk ' || to_char(c.risk, 'FM999999999999990.00') || ' (' || c.band || '), '
           || to_char(c.overdue, 'FM999999999999990.0') || '× overdue on an expected gap of '
           || to_char(c.expected_gap_days, 'FM999999999999990.0') || ' days, ' || c.orders || ' orders, scored '
           || rapport_rfc3339(c.scored_at)
           || CASE WHEN c.win_back_after IS NOT NULL THEN '; lapsed (one win-back for this silence)' ELSE '' END
    FROM survey_churn c WHERE c.store_id = p_store AND c.shopper_id = p_shopper
    UNION ALL
    SELECT NULL, 1,
           'profile (' || p.responses || ' surveys): '
           || concat_ws('; ', 'interests ' || array_to_string(p.interests, ', '),
                        CASE WHEN p.habits::text <> '{}' THEN 'habits ' || p.habits::text END,
                        'income band ' || p.income_band,
                        CASE WHEN p.channels IS NOT NULL THEN 'channels ' || coalesce(nullif(array_to_string(p.channels, ', '), ''), 'none') END,
                        CASE WHEN p.other::text <> '{}' THEN 'other answers ' || p.other::text END)
    FROM survey_profiles p WHERE p.store_id = p_store AND p.shopper_id = p_shopper
    UNION ALL
    SELECT r.submitted_at, 0, 'survey    ' || r.survey_id || ' answered  [message ' || r.message_id || ']'
    FROM survey_responses r WHERE r.store_id = p_store AND r.shopper_id = p_shopper
$$;
