-- The de-duplication retention job looks for a group's ids older than the window: an index on both, so that it
-- probes whatever the table's size (with processed_at alone, the planner read the whole table for a LIMIT).
CREATE INDEX rapport_processed_messages_by_group_age ON rapport_processed_messages (group_id, processed_at);
DROP INDEX rapport_processed_messages_by_age;
