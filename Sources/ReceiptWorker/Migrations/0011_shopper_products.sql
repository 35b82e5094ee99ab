-- "Customers like you" (issue 30): what each shopper bought, kept as orders arrive, from which a shopper's nearest
-- neighbours (customers who bought the same products) and what they bought are read at ranking time — no pair table,
-- so nothing grows with the square of a basket.
--
-- receipt_shopper_products: one row per (shopper, product) with the completed orders that held it and when it was
-- last bought; a batch adds the change of each customer it touches (a delta, like the succession counts), a refund
-- takes it out (rows at zero are deleted), `rebuild` recomputes them from the orders, erasure deletes them.
-- The second index reads a product's most recent buyers (the neighbours' candidates, capped per product).
CREATE TABLE receipt_shopper_products (
    store_id   text        NOT NULL,
    shopper_id bigint      NOT NULL,
    product_id text        NOT NULL,
    orders     integer     NOT NULL,
    last_at    timestamptz NOT NULL,
    PRIMARY KEY (store_id, shopper_id, product_id)
);
CREATE INDEX receipt_shopper_products_buyers ON receipt_shopper_products (store_id, product_id, last_at DESC) INCLUDE (shopper_id);

-- How many distinct products each shopper bought: the cosine similarity's norm.
CREATE TABLE receipt_shopper_breadth (
    store_id   text    NOT NULL,
    shopper_id bigint  NOT NULL,
    products   integer NOT NULL,
    PRIMARY KEY (store_id, shopper_id)
);

-- Erasure: the shopper's purchase profile goes with their orders' identities.
CREATE OR REPLACE FUNCTION receipt_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := rapport_erased_shoppers(p_store, p_contact, p_keys);
    emails text[] := ARRAY(SELECT email FROM rapport_contacts WHERE store_id = p_store AND contact_id = p_contact AND email IS NOT NULL);
    shoppers bigint[] := ARRAY(
        SELECT shopper_id FROM receipt_orders WHERE store_id = p_store AND shopper_key = ANY(p_keys) AND shopper_id IS NOT NULL
        UNION
        SELECT shopper_id FROM receipt_orders WHERE store_id = p_store AND email = ANY(emails) AND shopper_id IS NOT NULL
        UNION
        SELECT unnest(ids));
BEGIN
    DELETE FROM receipt_shopper_products WHERE store_id = p_store AND shopper_id = ANY(shoppers);
    DELETE FROM receipt_shopper_breadth WHERE store_id = p_store AND shopper_id = ANY(shoppers);
    UPDATE receipt_orders
    SET shopper_key = store_id || '/erased:' || order_id, shopper_id = NULL, user_id = NULL, anonymous_id = NULL, email = NULL,
        first_name = NULL, last_name = NULL
    WHERE store_id = p_store AND order_id IN (
        SELECT order_id FROM receipt_orders WHERE store_id = p_store AND shopper_key = ANY(p_keys)
        UNION
        SELECT order_id FROM receipt_orders WHERE store_id = p_store AND email = ANY(emails)
        UNION
        SELECT order_id FROM receipt_orders WHERE store_id = p_store AND shopper_id = ANY(ids));
END;
$$;
