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
