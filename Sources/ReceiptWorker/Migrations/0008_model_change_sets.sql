-- The next-sale model's changes as one row per batch, store and kind, its entries in arrays (Sources/NextSale:
-- PurchaseModelStore.record and fold). Measured at 40,000 orders (~19 entries an order): a row per entry made the
-- batches' COPY 4.5 s and the fold's DELETE … RETURNING 3.4 s of PostgreSQL time — per-row heap and index work for
-- rows that live a second; a set is one row for thousands of entries.
-- receipt_model_changes stays for the pods of the previous release during a rollout: the fold moves their rows into
-- sets. It is dropped a release later.
CREATE TABLE receipt_model_change_sets (
    id        bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id  text     NOT NULL,
    kind      text     NOT NULL CHECK (kind IN ('orders', 'followed', 'transition', 'together', 'category_transition', 'daily')),
    a         text[]   NOT NULL,
    b         text[]   NOT NULL,
    count     bigint[] NOT NULL,
    -- The arrays' length, so that the fold measures its chunk without reading them.
    entries   integer  NOT NULL,
    CHECK (cardinality(a) = entries AND cardinality(b) = entries AND cardinality(count) = entries)
);
