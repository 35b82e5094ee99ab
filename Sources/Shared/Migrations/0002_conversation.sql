-- The conversation every worker has with a shopper: who may be written to, and every decision to write or not.

-- One row per (store, email address): the permission state the conversation policy reads at the moment a command is
-- emitted. CaptureWorker derives it from its consent ledger; every worker reads it. Personal columns (email, names)
-- are cleared by erasure; the row stays, erased, so that decisions keep their subject.
CREATE TABLE rapport_contacts (
    store_id               text        NOT NULL,
    contact_id             bigint      GENERATED ALWAYS AS IDENTITY,
    email                  text,
    first_name             text,
    last_name              text,
    locale                 text,
    time_zone              text,
    transactional_ok       boolean     NOT NULL DEFAULT false,
    marketing_consent      boolean     NOT NULL DEFAULT false,
    consent_level          text        CHECK (consent_level IN ('single', 'confirmed', 'unknown', 'soft')),
    awaiting_confirmation  boolean     NOT NULL DEFAULT false,
    suppression            text        CHECK (suppression IN ('marketing', 'all')),
    soft_bounce_streak     integer     NOT NULL DEFAULT 0,
    unsubscribe_token      text        NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', ''),
    erased_at              timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, contact_id),
    UNIQUE (store_id, email)
);

-- Every decision to send, defer, suppress or drop a message, with its reason, and every recommendation command
-- emitted: the answer to "why did (or didn't) this shopper get this email?". Marketing sends here are what the
-- contact-pressure caps count.
CREATE TABLE rapport_contact_decisions (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id      text        NOT NULL,
    contact_id    bigint,
    subject       text        NOT NULL,
    worker        text        NOT NULL,
    template      text        NOT NULL,
    category      text        NOT NULL CHECK (category IN ('transactional', 'marketing', 'recommendation')),
    decision      text        NOT NULL CHECK (decision IN ('sent', 'deferred', 'suppressed', 'dropped')),
    reason        text        NOT NULL,
    command_id    text,
    causation_id  text        NOT NULL,
    not_before    timestamptz,
    decided_at    timestamptz NOT NULL
);
CREATE INDEX rapport_contact_decisions_by_contact ON rapport_contact_decisions (contact_id, decided_at);
CREATE INDEX rapport_contact_decisions_by_subject ON rapport_contact_decisions (store_id, subject, decided_at);

-- Erasure across workers: every component that keeps personal data defines
--   <component>_erase_contact(store_id text, contact_id bigint, shopper_keys text[])
-- in its own migrations; this calls each one found in the schema, then clears the contact itself.
CREATE FUNCTION rapport_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    eraser regproc;
BEGIN
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
