-- ReceiptWorker's part of erasure finds the shoppers' orders through rapport_erased_shoppers (primary-key probes).
CREATE OR REPLACE FUNCTION receipt_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE receipt_orders
    SET shopper_key = store_id || '/erased:' || order_id, shopper_id = NULL, user_id = NULL, anonymous_id = NULL, email = NULL,
        first_name = NULL, last_name = NULL
    WHERE store_id = p_store
      AND (shopper_key = ANY(p_keys)
           OR email IN (SELECT email FROM rapport_contacts WHERE store_id = p_store AND contact_id = p_contact AND email IS NOT NULL)
           OR shopper_id = ANY(rapport_erased_shoppers(p_store, p_contact, p_keys)));
$$;
