-- Orders belong to the shared shopper (rapport_shoppers: one shopper across workers) instead of a customer key of
-- ReceiptWorker's own (userId, else the order's email, else anonymousId): a guest's order, their later logged-in
-- order and their survey are one customer once any identity links them. `shopper_key` is now the contract's shopper
-- key of the order's message, as the erasure request names it.
ALTER TABLE receipt_orders ADD COLUMN shopper_id bigint;
-- Orders recorded before: the shopper their buyer's identities resolve to, where one does (user id first, then the
-- order's address, then the anonymous id). The others stay without a shopper (in no customer's history) until
-- `ReceiptWorker rebuild`'s counts, which still group them by their old key.
UPDATE receipt_orders o SET shopper_id = (
    SELECT i.shopper_id FROM rapport_identities i
    WHERE i.store_id = o.store_id
      AND ((i.kind = 'user_id' AND i.value = o.user_id) OR (i.kind = 'email' AND i.value = o.email) OR (i.kind = 'anonymous_id' AND i.value = o.anonymous_id))
    ORDER BY i.kind = 'user_id' DESC, i.kind = 'email' DESC
    LIMIT 1)
WHERE o.shopper_id IS NULL;
CREATE INDEX receipt_orders_by_shopper_id ON receipt_orders (store_id, shopper_id, placed_at);

-- ReceiptWorker's part of a merge: the anonymous shopper's orders become the known shopper's.
CREATE FUNCTION receipt_merge_shopper(p_store text, p_from bigint, p_into bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE receipt_orders SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
$$;

-- Erasure keeps the orders (the store's books and the model's counts) and removes who placed them: the orders of the
-- shoppers the keys or the contact's address resolve to, and any order placed under those keys or that address.
CREATE OR REPLACE FUNCTION receipt_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE receipt_orders
    SET shopper_key = store_id || '/erased:' || order_id, shopper_id = NULL, user_id = NULL, anonymous_id = NULL, email = NULL,
        first_name = NULL, last_name = NULL
    WHERE store_id = p_store
      AND (shopper_key = ANY(p_keys)
           OR email IN (SELECT email FROM rapport_contacts WHERE store_id = p_store AND contact_id = p_contact AND email IS NOT NULL)
           OR shopper_id IN (
               SELECT i.shopper_id FROM rapport_identities i
               WHERE i.store_id = p_store
                 AND (p_store || '/' || i.value = ANY(p_keys)
                      OR (i.kind = 'email' AND i.value IN (SELECT email FROM rapport_contacts WHERE store_id = p_store AND contact_id = p_contact)))));
$$;
