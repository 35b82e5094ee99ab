-- SurveyWorker owns survey responses, per store, one per submission.
CREATE TABLE survey_responses (
    store_id      text        NOT NULL,
    message_id    text        NOT NULL,
    survey_id     text        NOT NULL,
    shopper_key   text        NOT NULL,
    answers       jsonb       NOT NULL,
    submitted_at  timestamptz NOT NULL,
    PRIMARY KEY (store_id, message_id)
);
CREATE INDEX survey_responses_by_shopper ON survey_responses (store_id, shopper_key, submitted_at);
