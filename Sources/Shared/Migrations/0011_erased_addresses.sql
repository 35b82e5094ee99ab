-- Erased addresses, as salted hashes, for stores that refuse their re-import (`keep_erasure_hash`): every worker reads
-- them now (an order or a survey replayed from an erased address is refused too), so the table moves from
-- CaptureWorker's `capture_erased_addresses` (copied, then dropped, by CaptureWorker's migration 7) to the shared schema.
CREATE TABLE rapport_erased_addresses (
    store_id    text        NOT NULL,
    email_hash  text        NOT NULL,
    erased_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, email_hash)
);
