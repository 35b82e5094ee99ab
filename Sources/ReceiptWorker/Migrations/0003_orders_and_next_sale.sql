-- Orders as the storefront sent them: amounts in the currency's minor units (JPY has none, BHD three), the buyer's
-- ids and address as given (personal data: erasure clears them), and when a refund or cancellation ended the order.
-- `shopper_key` is the customer across orders: store/userId, else store/email, else store/anonymousId.
ALTER TABLE receipt_orders
    DROP COLUMN total,
    ADD COLUMN message_id    text,
    ADD COLUMN user_id       text,
    ADD COLUMN anonymous_id  text,
    ADD COLUMN email         text,
    ADD COLUMN first_name    text,
    ADD COLUMN last_name     text,
    ADD COLUMN locale        text,
    ADD COLUMN subtotal      bigint,
    ADD COLUMN tax           bigint,
    ADD COLUMN shipping      bigint,
    ADD COLUMN discount      bigint,
    ADD COLUMN total         bigint,
    ADD COLUMN coupon        text,
    ADD COLUMN ended_at      timestamptz,
    ADD COLUMN recorded_at   timestamptz NOT NULL DEFAULT now();
CREATE INDEX receipt_orders_by_email ON receipt_orders (store_id, email) WHERE email IS NOT NULL;

ALTER TABLE receipt_order_items
    DROP COLUMN price,
    ADD COLUMN unit_price  bigint,
    ADD COLUMN name        text,
    ADD COLUMN sku         text,
    ADD COLUMN brand       text,
    ADD COLUMN variant     text,
    ADD COLUMN url         text,
    ADD COLUMN image_url   text;

-- The next-sale model, per store, kept incrementally as orders arrive, are refunded or cancelled (Sources/NextSale:
-- PurchaseCounts says what each count is). Rows that fall to zero are deleted.
CREATE TABLE receipt_product_stats (
    store_id    text   NOT NULL,
    product_id  text   NOT NULL,
    category    text,
    orders      bigint NOT NULL,
    followed    bigint NOT NULL,
    PRIMARY KEY (store_id, product_id)
);
CREATE INDEX receipt_product_stats_by_category ON receipt_product_stats (store_id, category, orders DESC, product_id);

CREATE TABLE receipt_transitions (
    store_id      text   NOT NULL,
    from_product  text   NOT NULL,
    to_product    text   NOT NULL,
    count         bigint NOT NULL,
    PRIMARY KEY (store_id, from_product, to_product)
);
CREATE INDEX receipt_transitions_strongest ON receipt_transitions (store_id, from_product, count DESC, to_product);

CREATE TABLE receipt_copurchases (
    store_id      text   NOT NULL,
    from_product  text   NOT NULL,
    to_product    text   NOT NULL,
    count         bigint NOT NULL,
    PRIMARY KEY (store_id, from_product, to_product)
);
CREATE INDEX receipt_copurchases_strongest ON receipt_copurchases (store_id, from_product, count DESC, to_product);

CREATE TABLE receipt_category_transitions (
    store_id       text   NOT NULL,
    from_category  text   NOT NULL,
    to_category    text   NOT NULL,
    count          bigint NOT NULL,
    PRIMARY KEY (store_id, from_category, to_category)
);
CREATE INDEX receipt_category_transitions_strongest ON receipt_category_transitions (store_id, from_category, count DESC, to_category);

CREATE TABLE receipt_daily_sales (
    store_id    text   NOT NULL,
    day         date   NOT NULL,
    product_id  text   NOT NULL,
    orders      bigint NOT NULL,
    PRIMARY KEY (store_id, day, product_id)
);

-- Erasure keeps the orders (the store's books and the model's counts) and removes who placed them.
CREATE OR REPLACE FUNCTION receipt_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE receipt_orders
    SET shopper_key = store_id || '/erased:' || order_id, user_id = NULL, anonymous_id = NULL, email = NULL, first_name = NULL,
        last_name = NULL
    WHERE store_id = p_store
      AND (shopper_key = ANY(p_keys)
           OR email IN (SELECT email FROM rapport_contacts WHERE store_id = p_store AND contact_id = p_contact AND email IS NOT NULL));
$$;
