-- An erasure left two copies of personal data behind: outbox rows parked because they could never be published
-- (a command naming the shopper's address, a dead letter holding their event) and each journey step's shopper key
-- (`store/<userId | anonymousId | email>`). Both go now: the parked rows keyed by any of the shopper's keys are
-- deleted, and every step of the shopper keeps only its store as its key.
CREATE INDEX rapport_outbox_parked_by_key ON rapport_outbox (key) WHERE parked_at IS NOT NULL;

CREATE OR REPLACE FUNCTION rapport_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    eraser regproc;
    ids bigint[];
    emails text[];
BEGIN
    ids := rapport_erased_shoppers(p_store, p_contact, p_keys);
    emails := ARRAY(SELECT email FROM rapport_contacts WHERE store_id = p_store AND contact_id = p_contact AND email IS NOT NULL);
    UPDATE rapport_scheduled_steps
    SET state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END,
        reason = CASE WHEN state = 'pending' THEN 'erased' ELSE reason END,
        email = NULL, data = '{}', shopper_key = p_store || '/erased', updated_at = now()
    WHERE store_id = p_store AND step_id IN (
        SELECT step_id FROM rapport_scheduled_steps WHERE store_id = p_store AND shopper_id = ANY(ids)
        UNION
        SELECT step_id FROM rapport_scheduled_steps WHERE store_id = p_store AND shopper_key = ANY(p_keys)
        UNION
        SELECT step_id FROM rapport_scheduled_steps WHERE store_id = p_store AND email = ANY(emails));
    DELETE FROM rapport_outbox
    WHERE parked_at IS NOT NULL AND key = ANY(ARRAY(SELECT convert_to(k, 'UTF8') FROM unnest(p_keys) AS k));
    FOR eraser IN SELECT rapport_component_functions('erase_contact') LOOP
        EXECUTE format('SELECT %s($1, $2, $3)', eraser) USING p_store, p_contact, p_keys;
    END LOOP;
    DELETE FROM rapport_identities WHERE store_id = p_store AND shopper_id = ANY(ids);
    UPDATE rapport_contacts
    SET email = NULL, first_name = NULL, last_name = NULL, locale = NULL, time_zone = NULL,
        transactional_ok = false, marketing_consent = false, awaiting_confirmation = false, suppression = 'all',
        erased_at = now(), updated_at = now()
    WHERE store_id = p_store AND contact_id = p_contact;
END;
$$;
