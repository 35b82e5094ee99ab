-- The erased addresses' hashes move to the shared `rapport_erased_addresses` (shared migration 11), which every
-- worker reads.
INSERT INTO rapport_erased_addresses (store_id, email_hash, erased_at)
SELECT store_id, email_hash, erased_at FROM capture_erased_addresses
ON CONFLICT DO NOTHING;
DROP TABLE capture_erased_addresses;
