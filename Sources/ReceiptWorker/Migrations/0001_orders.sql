-- ReceiptWorker owns orders and their items, per store.
CREATE TABLE receipt_orders (
    store_id     text           NOT NULL,
    order_id     text           NOT NULL,
    shopper_key  text           NOT NULL,
    currency     char(3)        NOT NULL,
    total        numeric(14, 2),
    status       text           NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'refunded', 'cancelled')),
    placed_at    timestamptz    NOT NULL,
    PRIMARY KEY (store_id, order_id)
);
CREATE INDEX receipt_orders_by_shopper ON receipt_orders (store_id, shopper_key, placed_at);

CREATE TABLE receipt_order_items (
    store_id    text           NOT NULL,
    order_id    text           NOT NULL,
    line        integer        NOT NULL,
    product_id  text           NOT NULL,
    category    text,
    price       numeric(14, 2),
    quantity    integer        NOT NULL DEFAULT 1,
    PRIMARY KEY (store_id, order_id, line),
    FOREIGN KEY (store_id, order_id) REFERENCES receipt_orders (store_id, order_id) ON DELETE CASCADE
);
