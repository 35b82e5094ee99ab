-- CaptureWorker owns the shopper and every identity that resolves to one, per store.
CREATE TABLE capture_shoppers (
    store_id    text        NOT NULL,
    shopper_id  bigint      GENERATED ALWAYS AS IDENTITY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, shopper_id)
);

-- userId, anonymousId and normalised email each point at one shopper of the store.
CREATE TABLE capture_identities (
    store_id    text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('user_id', 'anonymous_id', 'email')),
    value       text        NOT NULL,
    shopper_id  bigint      NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, kind, value),
    FOREIGN KEY (store_id, shopper_id) REFERENCES capture_shoppers (store_id, shopper_id) ON DELETE CASCADE
);
CREATE INDEX capture_identities_by_shopper ON capture_identities (store_id, shopper_id);
