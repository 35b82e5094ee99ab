-- The beginning of the relationship: who the shopper is, what they agreed to (as given, never rewritten), what they
-- look at, and what was offered.

ALTER TABLE capture_shoppers
    ADD COLUMN contact_id              bigint,
    ADD COLUMN email                   text,
    ADD COLUMN first_name              text,
    ADD COLUMN last_name               text,
    ADD COLUMN phone                   text,
    ADD COLUMN traits                  jsonb,
    ADD COLUMN confirm_token           text,
    ADD COLUMN welcome_offer_code      text,
    ADD COLUMN welcome_causation_id    text,
    ADD COLUMN welcome_state           text CHECK (welcome_state IN ('held', 'sent', 'declined')),
    ADD COLUMN browse_recommended_at   timestamptz,
    ADD COLUMN erased_at               timestamptz;

-- The consent ledger: every consent-relevant event exactly as given. Rows are never updated or deleted, except by
-- erasure (which clears their personal columns: IP, user agent, consent text) and by an anonymous shopper's merge into
-- the known one (which moves them): both set rapport.ledger_rewrite for their own statement only.
CREATE TABLE capture_consent_ledger (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id       text        NOT NULL,
    shopper_id     bigint      NOT NULL,
    message_id     text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('consent', 'confirmation', 'checkout', 'unsubscribe', 'spam',
                                                        'hard_bounce', 'soft_bounce', 'erasure')),
    channel        text        NOT NULL DEFAULT 'email',
    marketing      boolean,
    source         text,
    opt_in_level   text,
    consent_text   text,
    text_version   text,
    ip             text,
    user_agent     text,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX capture_consent_ledger_by_shopper ON capture_consent_ledger (store_id, shopper_id, id);

CREATE FUNCTION capture_consent_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('rapport.ledger_rewrite', true) = 'on' THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'the consent ledger is append-only (% refused)', TG_OP USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER capture_consent_ledger_append_only BEFORE UPDATE OR DELETE ON capture_consent_ledger
    FOR EACH ROW EXECUTE FUNCTION capture_consent_ledger_append_only();

-- Browsing interests per shopper: products and categories, with counts and recency.
CREATE TABLE capture_interests (
    store_id    text        NOT NULL,
    shopper_id  bigint      NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('product', 'category')),
    item        text        NOT NULL,
    views       integer     NOT NULL DEFAULT 0,
    adds        integer     NOT NULL DEFAULT 0,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (store_id, shopper_id, kind, item)
);

-- What the shopper did, by event name only (no properties): the explain timeline.
CREATE TABLE capture_timeline (
    store_id    text        NOT NULL,
    shopper_id  bigint      NOT NULL,
    message_id  text        NOT NULL,
    event       text        NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX capture_timeline_by_shopper ON capture_timeline (store_id, shopper_id, occurred_at);

-- Erased addresses, as a salted hash, for stores that refuse their re-import.
CREATE TABLE capture_erased_addresses (
    store_id    text        NOT NULL,
    email_hash  text        NOT NULL,
    erased_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, email_hash)
);

-- Resolves each event's identities to a shopper, in order, creating shoppers and linking identities as it goes.
-- An event carrying identities that point at two shoppers (anonymous browsing, then identify or capture) merges the
-- anonymous one into the known one: its identities, interests and timeline move, so what was viewed still counts.
-- Every event gets the shopper it belongs to at the end of the batch (an earlier event's shopper may have been merged
-- by a later one).
CREATE FUNCTION capture_resolve_shoppers(p_store text[], p_user text[], p_anonymous text[], p_email text[])
RETURNS TABLE (n integer, shopper_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    v_store text;
    v_user text;
    v_anonymous text;
    v_email text;
    hits bigint[];
    found_ids bigint[];
    target bigint;
    other bigint;
    resolved bigint[] := ARRAY[]::bigint[];
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_store, 1), 0) LOOP
        v_store := p_store[i];
        v_user := p_user[i];
        v_anonymous := p_anonymous[i];
        v_email := p_email[i];
        -- Three primary-key probes (one OR-ed condition would not use the index in a generic plan).
        hits := ARRAY(
            SELECT ci.shopper_id FROM capture_identities ci WHERE ci.store_id = v_store AND ci.kind = 'user_id' AND ci.value = v_user
            UNION ALL
            SELECT ci.shopper_id FROM capture_identities ci WHERE ci.store_id = v_store AND ci.kind = 'email' AND ci.value = v_email
            UNION ALL
            SELECT ci.shopper_id FROM capture_identities ci WHERE ci.store_id = v_store AND ci.kind = 'anonymous_id' AND ci.value = v_anonymous);
        found_ids := ARRAY(SELECT DISTINCT h FROM unnest(hits) AS h ORDER BY 1);
        IF cardinality(found_ids) = 0 THEN
            INSERT INTO capture_shoppers (store_id) VALUES (v_store) RETURNING capture_shoppers.shopper_id INTO target;
        ELSIF cardinality(found_ids) = 1 THEN
            target := found_ids[1];
        ELSE
            -- The known shopper wins: the one with the user id, else the one with the email, else the oldest.
            SELECT ci.shopper_id INTO target FROM capture_identities ci
            WHERE ci.store_id = v_store AND ci.shopper_id = ANY(found_ids)
            ORDER BY (ci.kind = 'user_id' AND ci.value = v_user) DESC, (ci.kind = 'email' AND ci.value = v_email) DESC,
                     ci.shopper_id
            LIMIT 1;
            FOREACH other IN ARRAY found_ids LOOP
                CONTINUE WHEN other = target;
                IF capture_merge_shopper(v_store, other, target) THEN
                    resolved := array_replace(resolved, other, target);
                END IF;
            END LOOP;
        END IF;
        -- Only when some identity is new: most events carry ones already linked.
        IF cardinality(hits) < (v_user IS NOT NULL)::int + (v_anonymous IS NOT NULL)::int + (v_email IS NOT NULL)::int THEN
            INSERT INTO capture_identities (store_id, kind, value, shopper_id)
            SELECT v_store, k.kind, k.value, target
            FROM (VALUES ('user_id', v_user), ('anonymous_id', v_anonymous), ('email', v_email)) AS k(kind, value)
            WHERE k.value IS NOT NULL
            ON CONFLICT (store_id, kind, value) DO NOTHING;
        END IF;
        resolved := resolved || target;
    END LOOP;
    RETURN QUERY SELECT r.n::integer, r.id FROM unnest(resolved) WITH ORDINALITY AS r(id, n);
END;
$$;

-- Folds shopper `p_from` into `p_into`: identities, interests (summed), timeline, consent ledger; then deletes
-- `p_from`. Only an anonymous shopper is folded: two known people (each with a user id or an email) stay apart.
-- Returns whether it merged.
CREATE FUNCTION capture_merge_shopper(p_store text, p_from bigint, p_into bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM capture_identities WHERE store_id = p_store AND shopper_id = p_from AND kind <> 'anonymous_id') THEN
        RETURN false;
    END IF;
    UPDATE capture_identities SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
    INSERT INTO capture_interests AS i (store_id, shopper_id, kind, item, views, adds, last_at)
    SELECT store_id, p_into, kind, item, views, adds, last_at FROM capture_interests WHERE store_id = p_store AND shopper_id = p_from
    ON CONFLICT (store_id, shopper_id, kind, item) DO UPDATE
        SET views = i.views + EXCLUDED.views, adds = i.adds + EXCLUDED.adds, last_at = greatest(i.last_at, EXCLUDED.last_at);
    DELETE FROM capture_interests WHERE store_id = p_store AND shopper_id = p_from;
    UPDATE capture_timeline SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
    PERFORM set_config('rapport.ledger_rewrite', 'on', true);  -- the rows change owner, nothing else
    UPDATE capture_consent_ledger SET shopper_id = p_into WHERE store_id = p_store AND shopper_id = p_from;
    PERFORM set_config('rapport.ledger_rewrite', 'off', true);
    DELETE FROM capture_shoppers WHERE store_id = p_store AND shopper_id = p_from;
    RETURN true;
END;
$$;

-- CaptureWorker's part of erasure (called by rapport_erase_contact for every component): the shopper(s) behind the
-- contact or the keys lose their personal data; the ledger keeps what was agreed, without IP or user agent.
CREATE FUNCTION capture_erase_contact(p_store text, p_contact bigint, p_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    SELECT array_agg(DISTINCT s.shopper_id) INTO ids FROM capture_shoppers s
    WHERE s.store_id = p_store AND (s.contact_id = p_contact OR s.shopper_id IN (
        SELECT ci.shopper_id FROM capture_identities ci
        WHERE ci.store_id = p_store AND p_store || '/' || ci.value = ANY(p_keys)));
    IF ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('rapport.ledger_rewrite', 'on', true);
    UPDATE capture_consent_ledger SET ip = NULL, user_agent = NULL, consent_text = NULL
    WHERE store_id = p_store AND shopper_id = ANY(ids);
    PERFORM set_config('rapport.ledger_rewrite', 'off', true);
    DELETE FROM capture_identities WHERE store_id = p_store AND shopper_id = ANY(ids);
    DELETE FROM capture_interests WHERE store_id = p_store AND shopper_id = ANY(ids);
    DELETE FROM capture_timeline WHERE store_id = p_store AND shopper_id = ANY(ids);
    UPDATE capture_shoppers
    SET email = NULL, first_name = NULL, last_name = NULL, phone = NULL, traits = NULL, confirm_token = NULL,
        welcome_offer_code = NULL, welcome_state = CASE WHEN welcome_state = 'held' THEN 'declined' ELSE welcome_state END,
        erased_at = now(), updated_at = now()
    WHERE store_id = p_store AND shopper_id = ANY(ids);
END;
$$;
