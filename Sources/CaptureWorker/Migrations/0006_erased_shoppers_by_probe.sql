-- CaptureWorker's part of erasure finds its shoppers through rapport_erased_shoppers (primary-key probes) instead of
-- an OR of `contact_id` (no index) and an expression over the store's identities: both read whole tables. A shopper's
-- contact is the contact of its address, whose email identity the shared lookup probes.
CREATE OR REPLACE FUNCTION capture_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    ids := rapport_erased_shoppers(p_store, p_contact, p_keys);
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM set_config('rapport.ledger_rewrite', 'on', true);
    UPDATE capture_consent_ledger SET ip = NULL, user_agent = NULL, consent_text = NULL
    WHERE store_id = p_store AND shopper_id = ANY(ids);
    PERFORM set_config('rapport.ledger_rewrite', 'off', true);
    DELETE FROM capture_interests WHERE store_id = p_store AND shopper_id = ANY(ids);
    DELETE FROM capture_timeline WHERE store_id = p_store AND shopper_id = ANY(ids);
    UPDATE capture_shoppers
    SET email = NULL, first_name = NULL, last_name = NULL, phone = NULL, traits = NULL, confirm_token = NULL,
        welcome_offer_code = NULL, welcome_causation_id = NULL,
        welcome_state = CASE WHEN welcome_state = 'held' THEN 'declined' ELSE welcome_state END,
        erased_at = now(), updated_at = now()
    WHERE store_id = p_store AND shopper_id = ANY(ids);
END;
$$;
