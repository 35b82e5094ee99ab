-- What a shopper has told the store they care about, for every worker to act on: the categories they are interested
-- in (the next sale leans towards them) and the channels they chose (the walk-with-me invites to those only).
-- SurveyWorker writes it from the survey profile; `channels` NULL means "not stated" (all the store's channels),
-- an empty array "none". The dispatchers (rapport_merge_shopper, rapport_erase_contact) reach it through the two
-- functions below, as they reach every component's part.
CREATE TABLE rapport_shopper_preferences (
    store_id    text        NOT NULL,
    shopper_id  bigint      NOT NULL,
    interests   text[]      NOT NULL DEFAULT '{}',
    channels    text[],
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, shopper_id)
);

-- A merge keeps the known shopper's stated preferences, else takes the anonymous one's.
CREATE FUNCTION rapport_preferences_merge_shopper(p_store text, p_from bigint, p_into bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE rapport_shopper_preferences SET shopper_id = p_into
    WHERE store_id = p_store AND shopper_id = p_from
      AND NOT EXISTS (SELECT 1 FROM rapport_shopper_preferences WHERE store_id = p_store AND shopper_id = p_into);
    DELETE FROM rapport_shopper_preferences WHERE store_id = p_store AND shopper_id = p_from;
$$;

CREATE FUNCTION rapport_preferences_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM rapport_shopper_preferences WHERE store_id = p_store AND shopper_id = ANY(rapport_erased_shoppers(p_store, p_contact, p_keys));
$$;
