-- "Customers like you" (issue 30): what each shopper bought, kept as orders arrive, from which a shopper's nearest
-- neighbours (customers who bought the same products) and what they bought are found — no pair table, so nothing
-- grows with the square of a basket.
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

-- How many distinct products each shopper bought (the cosine similarity's norm). Each change to a shopper's products
-- counts one (`changes`, `changed_at`); `suggested` is the count their suggestions reflect (as the compactor read it:
-- a batch committing meanwhile leaves the shopper stale, never lost), `suggested_at` when they were computed (the
-- refresh interval counts from it).
CREATE TABLE receipt_shopper_breadth (
    store_id     text        NOT NULL,
    shopper_id   bigint      NOT NULL,
    products     integer     NOT NULL,
    changes      bigint      NOT NULL DEFAULT 1,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    suggested    bigint,
    suggested_at timestamptz,
    PRIMARY KEY (store_id, shopper_id)
);
CREATE INDEX receipt_shopper_breadth_stale ON receipt_shopper_breadth (changed_at) WHERE suggested IS NULL OR suggested < changes;

-- Suggestions, computed off the order path: a shopper's nearest neighbours and what they bought cost about a
-- thousand rows to find (measured: 2,000 shoppers of a 40,000-order store, 14 s in one statement — six times a batch's
-- whole work when every order did it). Each shopper's best 60 suggestions are kept here, recomputed by the model's
-- compactor for the shoppers whose products changed (at most once per refresh interval each), and read by a batch,
-- `recommend` and the backtest in one index range per shopper.
CREATE TABLE receipt_shopper_suggestions (
    store_id   text             NOT NULL,
    shopper_id bigint           NOT NULL,
    product_id text             NOT NULL,
    score      double precision NOT NULL,
    PRIMARY KEY (store_id, shopper_id, product_id)
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
    DELETE FROM receipt_shopper_suggestions WHERE store_id = p_store AND shopper_id = ANY(shoppers);
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

-- A merge (the anonymous shopper's orders become the known shopper's): so do their products; the known shopper's
-- breadth is counted again and their suggestions are stale; the anonymous one's rows go.
CREATE OR REPLACE FUNCTION receipt_merge_shopper(p_store text, p_from bigint, p_into bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE receipt_orders SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
    WITH moved AS (
        DELETE FROM receipt_shopper_products WHERE store_id = p_store AND shopper_id = p_from RETURNING product_id, orders, last_at)
    INSERT INTO receipt_shopper_products AS t (store_id, shopper_id, product_id, orders, last_at)
    SELECT p_store, p_into, product_id, orders, last_at FROM moved ORDER BY product_id
    ON CONFLICT (store_id, shopper_id, product_id) DO UPDATE
    SET orders = t.orders + EXCLUDED.orders, last_at = greatest(t.last_at, EXCLUDED.last_at);
    DELETE FROM receipt_shopper_breadth WHERE store_id = p_store AND shopper_id = p_from;
    DELETE FROM receipt_shopper_suggestions WHERE store_id = p_store AND shopper_id = p_from;
    INSERT INTO receipt_shopper_breadth AS t (store_id, shopper_id, products)
    SELECT p_store, p_into, count(*) FROM receipt_shopper_products WHERE store_id = p_store AND shopper_id = p_into HAVING count(*) > 0
    ON CONFLICT (store_id, shopper_id) DO UPDATE SET products = EXCLUDED.products, changes = t.changes + 1, changed_at = now();
END;
$$;
