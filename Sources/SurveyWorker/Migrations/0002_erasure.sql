-- SurveyWorker's part of erasure (rapport_erase_contact calls every component's <component>_erase_contact): the
-- shopper's answers go, free text included.
CREATE FUNCTION survey_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM survey_responses WHERE store_id = p_store AND shopper_key = ANY(p_keys);
$$;
