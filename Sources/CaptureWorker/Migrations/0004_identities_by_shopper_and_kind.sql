-- A shopper's identity of one kind (loading shoppers reads their user id and anonymous id) is one probe of
-- (store_id, shopper_id, kind). With (store_id, shopper_id) alone the planner took the primary key for the user id —
-- (store_id, kind) as a range, then filtered by shopper: every user id of the store read for every shopper loaded, a
-- cost that grew with the store (26 ms of a 267-event batch in the storefront benchmark).
CREATE INDEX capture_identities_by_shopper_kind ON capture_identities (store_id, shopper_id, kind);
DROP INDEX capture_identities_by_shopper;
