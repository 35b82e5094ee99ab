-- EchoWorker's tables: one effect per event (its primary key makes a second application fail loudly), one audit row
-- per event, and the order effects were applied in (applied), to check each shopper's sequence.
CREATE TABLE echo_effects (
    store_id          text        NOT NULL,
    message_id        text        NOT NULL,
    shopper_key       text        NOT NULL,
    sequence          bigint      NOT NULL CHECK (sequence >= 0),
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    applied           bigint      GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (store_id, message_id)
);
CREATE INDEX echo_effects_by_shopper ON echo_effects (shopper_key, applied);

CREATE TABLE echo_audit (
    store_id    text        NOT NULL,
    message_id  text        NOT NULL,
    event       text        NOT NULL,
    at          timestamptz NOT NULL
);
