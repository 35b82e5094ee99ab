-- An erasure scrubs every step of the shopper, in every state (the address and the step's data are personal), found
-- by the shopper's id, their keys or the contact's address. Written before as one `OR` of the three over the store's
-- rows, with the shopper indexes partial (pending steps only): every erasure read the whole table (a sequential scan
-- at 200,000 steps, EXPLAIN). Now each of the three is an index probe of its own, and the step ids they find are
-- updated by primary key.
-- The pending-only index on the shopper key served no statement (the journeys find a shopper's pending steps by id);
-- the one on the shopper id becomes a full index, which also serves them.
CREATE INDEX rapport_scheduled_steps_of_shopper ON rapport_scheduled_steps (store_id, shopper_id);
CREATE INDEX rapport_scheduled_steps_of_shopper_key ON rapport_scheduled_steps (store_id, shopper_key);
CREATE INDEX rapport_scheduled_steps_of_email ON rapport_scheduled_steps (store_id, email) WHERE email IS NOT NULL;
DROP INDEX rapport_scheduled_steps_by_shopper;
DROP INDEX rapport_scheduled_steps_by_shopper_id;

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
        email = NULL, data = '{}', updated_at = now()
    WHERE store_id = p_store AND step_id IN (
        SELECT step_id FROM rapport_scheduled_steps WHERE store_id = p_store AND shopper_id = ANY(ids)
        UNION
        SELECT step_id FROM rapport_scheduled_steps WHERE store_id = p_store AND shopper_key = ANY(p_keys)
        UNION
        SELECT step_id FROM rapport_scheduled_steps WHERE store_id = p_store AND email = ANY(emails));
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
