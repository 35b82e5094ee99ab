-- Changes to the next-sale model, appended by every batch and folded into the model's tables by one compactor at a
-- time (Sources/NextSale: PurchaseModelStore.fold). Measured: with batches adding straight to the model's tables, the
-- concurrent transactions queued on the rows of popular products, categories and today's sales (445 ms a batch on the
-- product counts alone); appending contends on nothing, and the fold is one writer.
-- kind: orders (a product, b its category), followed (a product), transition (a → b products), together (a, b),
-- category_transition (a → b categories), daily (a product, b the day).
CREATE TABLE receipt_model_changes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id  text   NOT NULL,
    kind      text   NOT NULL CHECK (kind IN ('orders', 'followed', 'transition', 'together', 'category_transition', 'daily')),
    a         text   NOT NULL,
    b         text,
    count     bigint NOT NULL
);

-- Each store's top sellers of the last 90 days, refreshed by the fold at most once a refresh interval: summing the
-- daily sales of a large store for every recommendation cost 40 ms and more (measured at a million orders).
CREATE TABLE receipt_top_sellers (
    store_id     text        NOT NULL,
    product_id   text        NOT NULL,
    orders       bigint      NOT NULL,
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (store_id, product_id)
);
CREATE INDEX receipt_top_sellers_best ON receipt_top_sellers (store_id, orders DESC, product_id);
