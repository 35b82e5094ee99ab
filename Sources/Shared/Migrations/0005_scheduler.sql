-- Scheduled steps: a conversation's later messages (a journey's thank-you, survey invitation, …) as rows, emitted
-- when due by the scheduler of the worker whose consumer group owns them (Sources/Shared/Scheduler). A step is
-- pending until the scheduler decides it: sent, cancelled (an exit condition), dropped or suppressed (the
-- conversation policy), or deferred — pending again with a later due_at and the reason.
CREATE TABLE rapport_scheduled_steps (
    store_id      text        NOT NULL,
    step_id       bigint      GENERATED ALWAYS AS IDENTITY,
    group_id      text        NOT NULL,
    journey       text        NOT NULL,
    template      text        NOT NULL,
    shopper_key   text        NOT NULL,
    email         text,
    causation_id  text        NOT NULL,
    order_id      text,
    data          jsonb       NOT NULL DEFAULT '{}',
    due_at        timestamptz NOT NULL,
    state         text        NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'sent', 'cancelled', 'dropped', 'suppressed')),
    reason        text,
    attempts      integer     NOT NULL DEFAULT 0,
    command_id    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, step_id),
    -- One step per template per causing event: scheduling again (a batch retried) changes nothing.
    UNIQUE (store_id, causation_id, template)
);
CREATE INDEX rapport_scheduled_steps_due ON rapport_scheduled_steps (group_id, due_at) WHERE state = 'pending';
CREATE INDEX rapport_scheduled_steps_by_shopper ON rapport_scheduled_steps (store_id, shopper_key) WHERE state = 'pending';
CREATE INDEX rapport_scheduled_steps_by_order ON rapport_scheduled_steps (store_id, order_id) WHERE state = 'pending';

-- Outbox rows of scheduled steps belong to no input partition (source_topic '@scheduler'): a scheduler takes a lease
-- on the rows it publishes, so that replicas never publish one row at the same time, and a crash's leftovers are
-- relayed by any replica once the lease has run out.
ALTER TABLE rapport_outbox ADD COLUMN lease_until timestamptz;
CREATE INDEX rapport_outbox_scheduled ON rapport_outbox (group_id, id) WHERE source_topic = '@scheduler' AND parked_at IS NULL;

-- Erasure now also ends the shopper's pending steps and clears what they kept (address, names, what was bought).
CREATE OR REPLACE FUNCTION rapport_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    eraser regproc;
BEGIN
    UPDATE rapport_scheduled_steps
    SET state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END,
        reason = CASE WHEN state = 'pending' THEN 'erased' ELSE reason END,
        email = NULL, data = '{}', updated_at = now()
    WHERE store_id = p_store
      AND (shopper_key = ANY(p_keys)
           OR email IN (SELECT email FROM rapport_contacts WHERE store_id = p_store AND contact_id = p_contact AND email IS NOT NULL));
    FOR eraser IN
        SELECT p.oid::regproc FROM pg_proc p
        WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
          AND p.proname LIKE '%\_erase\_contact' AND p.proname <> 'rapport_erase_contact'
        ORDER BY p.proname
    LOOP
        EXECUTE format('SELECT %s($1, $2, $3)', eraser) USING p_store, p_contact, p_keys;
    END LOOP;
    UPDATE rapport_contacts
    SET email = NULL, first_name = NULL, last_name = NULL, locale = NULL, time_zone = NULL,
        transactional_ok = false, marketing_consent = false, awaiting_confirmation = false, suppression = 'all',
        erased_at = now(), updated_at = now()
    WHERE store_id = p_store AND contact_id = p_contact;
END;
$$;
