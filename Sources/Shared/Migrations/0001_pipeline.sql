-- The pipeline's own tables, shared by every worker and keyed by consumer group (one group = one worker).

-- Messages already applied: (store, messageId) is the contract's de-duplication key. A message seen again changes
-- nothing and emits nothing.
CREATE TABLE rapport_processed_messages (
    group_id      text        NOT NULL,
    store_id      text        NOT NULL,
    message_id    text        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, store_id, message_id)
);
CREATE INDEX rapport_processed_messages_by_age ON rapport_processed_messages (processed_at);

-- The next offset to read per partition, written in each batch's transaction. A partition resumes from here, not
-- from Kafka's committed offset, which can lag (a commit refused during a rebalance).
CREATE TABLE rapport_consumer_offsets (
    group_id     text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    next_offset  bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Commands and dead letters written in a batch's transaction, published once it has committed, deleted once
-- delivered. Rows a crash leaves behind are published by whichever member next owns their source partition,
-- oldest first.
CREATE TABLE rapport_outbox (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id          text        NOT NULL,
    source_topic      text        NOT NULL,
    source_partition  integer     NOT NULL,
    topic             text        NOT NULL,
    key               bytea,
    value             bytea       NOT NULL,
    headers           bytea       NOT NULL,
    command_id        text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rapport_outbox_by_source ON rapport_outbox (group_id, source_topic, source_partition, id);
