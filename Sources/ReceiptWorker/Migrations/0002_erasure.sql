-- ReceiptWorker's part of erasure (rapport_erase_contact calls every component's <component>_erase_contact): the
-- shopper's orders and their items go; purchase history is personal data.
CREATE FUNCTION receipt_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM receipt_orders WHERE store_id = p_store AND shopper_key = ANY(p_keys);
$$;
