-- Shoppers and their identities now belong to Shared (rapport_shoppers, rapport_identities: one shopper across
-- workers); capture_shoppers keeps CaptureWorker's state of a shopper under the shared id, written by the batch that
-- first sees the shopper. What CaptureWorker had resolved moves over, ids unchanged.
INSERT INTO rapport_shoppers (store_id, shopper_id, created_at)
SELECT store_id, shopper_id, created_at FROM capture_shoppers
ON CONFLICT DO NOTHING;
INSERT INTO rapport_identities (store_id, kind, value, shopper_id, first_seen)
SELECT store_id, kind, value, shopper_id, first_seen FROM capture_identities
ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('rapport_shoppers', 'shopper_id'), coalesce((SELECT max(shopper_id) FROM rapport_shoppers), 0) + 1, false);

ALTER TABLE capture_shoppers ALTER COLUMN shopper_id DROP IDENTITY;
DROP FUNCTION capture_resolve_shoppers(text[], text[], text[], text[]);
DROP FUNCTION capture_merge_shopper(text, bigint, bigint);
DROP TABLE capture_identities;

-- CaptureWorker's part of a merge (rapport_merge_shopper calls every component's <component>_merge_shopper): interests
-- (summed), timeline and consent ledger move to the known shopper; the anonymous shopper's own row goes, or becomes the
-- known shopper's when CaptureWorker had none of it yet (another worker saw the shopper first).
CREATE FUNCTION capture_merge_shopper(p_store text, p_from bigint, p_into bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO capture_interests AS i (store_id, shopper_id, kind, item, views, adds, last_at)
    SELECT store_id, p_into, kind, item, views, adds, last_at FROM capture_interests WHERE store_id = p_store AND shopper_id = p_from
    ON CONFLICT (store_id, shopper_id, kind, item) DO UPDATE
        SET views = i.views + EXCLUDED.views, adds = i.adds + EXCLUDED.adds, last_at = greatest(i.last_at, EXCLUDED.last_at);
    DELETE FROM capture_interests WHERE store_id = p_store AND shopper_id = p_from;
    UPDATE capture_timeline SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
    PERFORM set_config('rapport.ledger_rewrite', 'on', true);  -- the rows change owner, nothing else
    UPDATE capture_consent_ledger SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
    PERFORM set_config('rapport.ledger_rewrite', 'off', true);
    IF EXISTS (SELECT 1 FROM capture_shoppers WHERE store_id = p_store AND shopper_id = p_into) THEN
        DELETE FROM capture_shoppers WHERE store_id = p_store AND shopper_id = p_from;
    ELSE
        UPDATE capture_shoppers SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
    END IF;
END;
$$;

-- CaptureWorker's part of erasure: as before, with the shoppers found through the shared identities (which
-- rapport_erase_contact removes after every component has run: the components after this one look them up too).
CREATE OR REPLACE FUNCTION capture_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    SELECT array_agg(DISTINCT s.shopper_id) INTO ids FROM capture_shoppers s
    WHERE s.store_id = p_store AND (s.contact_id = p_contact OR s.shopper_id IN (
        SELECT ri.shopper_id FROM rapport_identities ri
        WHERE ri.store_id = p_store AND p_store || '/' || ri.value = ANY(p_keys)));
    IF ids IS NULL THEN
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
