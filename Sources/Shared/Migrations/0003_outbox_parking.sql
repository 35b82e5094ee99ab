-- An outbox row knows the offset of the event that caused it (a command refused by its topic becomes a dead letter
-- naming that event), and a row that can never be published as any smaller copy either is parked: kept, with the
-- reason, and no longer relayed, so that it stops nothing behind it and is not lost.
ALTER TABLE rapport_outbox
    ADD COLUMN source_offset  bigint,
    ADD COLUMN parked_at      timestamptz,
    ADD COLUMN parked_reason  text;

DROP INDEX rapport_outbox_by_source;
CREATE INDEX rapport_outbox_by_source ON rapport_outbox (group_id, source_topic, source_partition, id) WHERE parked_at IS NULL;
