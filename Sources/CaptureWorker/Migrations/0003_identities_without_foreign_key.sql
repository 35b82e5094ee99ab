-- capture_identities loses its foreign key to capture_shoppers: the per-row referential check was 60 % of the cost of
-- inserting a batch's identities (measured: 50,000 rows in 465 ms with it, 196 ms without), the largest single
-- statement of a batch of new shoppers. Identities are written only by the code that resolves shoppers, in the
-- transaction that creates the shopper; every delete (merge, erasure, a creation undone after a race) removes the
-- identities itself, as the cascade did.
ALTER TABLE capture_identities DROP CONSTRAINT capture_identities_store_id_shopper_id_fkey;
