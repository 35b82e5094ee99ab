-- rapport_resolve_shoppers linked an event's new identities with ON CONFLICT DO NOTHING. When another transaction
-- linked the same identity between this one's probe and its insert (two workers seeing a new shopper's capture and
-- order at once), the insert did nothing and the event kept the shopper this transaction had just created — a
-- shopper with no identity, whose state (a welcome offered, a first order) nobody would find again: the next event
-- resolved to the other transaction's shopper and started over (found by scripts/chaos: two welcome offers for one
-- address). Now only the identities the probes did not find are inserted, plainly: a race lost raises
-- unique_violation, which the resolver reports as a retriable concurrent insert, and the batch's retry finds the link.
-- Identities found linked to another shopper that is not merged (two known people) stay where they are, as before.
CREATE OR REPLACE FUNCTION rapport_resolve_shoppers(p_store text[], p_user text[], p_anonymous text[], p_email text[])
RETURNS TABLE (n integer, shopper_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    v_store text;
    v_user text;
    v_anonymous text;
    v_email text;
    h_user bigint;
    h_anonymous bigint;
    h_email bigint;
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
        h_user := (SELECT ri.shopper_id FROM rapport_identities ri WHERE ri.store_id = v_store AND ri.kind = 'user_id' AND ri.value = v_user);
        h_email := (SELECT ri.shopper_id FROM rapport_identities ri WHERE ri.store_id = v_store AND ri.kind = 'email' AND ri.value = v_email);
        h_anonymous := (SELECT ri.shopper_id FROM rapport_identities ri
                        WHERE ri.store_id = v_store AND ri.kind = 'anonymous_id' AND ri.value = v_anonymous);
        found_ids := ARRAY(SELECT DISTINCT h FROM unnest(ARRAY[h_user, h_email, h_anonymous]) AS h WHERE h IS NOT NULL ORDER BY 1);
        IF cardinality(found_ids) = 0 THEN
            INSERT INTO rapport_shoppers (store_id) VALUES (v_store) RETURNING rapport_shoppers.shopper_id INTO target;
        ELSIF cardinality(found_ids) = 1 THEN
            target := found_ids[1];
        ELSE
            -- The known shopper wins: the one with the user id, else the one with the email, else the oldest.
            SELECT ri.shopper_id INTO target FROM rapport_identities ri
            WHERE ri.store_id = v_store AND ri.shopper_id = ANY(found_ids)
            ORDER BY (ri.kind = 'user_id' AND ri.value = v_user) DESC, (ri.kind = 'email' AND ri.value = v_email) DESC,
                     ri.shopper_id
            LIMIT 1;
            FOREACH other IN ARRAY found_ids LOOP
                CONTINUE WHEN other = target;
                IF rapport_merge_shopper(v_store, other, target) THEN
                    resolved := array_replace(resolved, other, target);
                END IF;
            END LOOP;
        END IF;
        -- Only when some identity is new: most events carry ones already linked. In key order, as the set-based path
        -- inserts, so that two transactions linking the same identities wait on each other rather than deadlock.
        IF (v_user IS NOT NULL AND h_user IS NULL) OR (v_anonymous IS NOT NULL AND h_anonymous IS NULL)
           OR (v_email IS NOT NULL AND h_email IS NULL) THEN
            INSERT INTO rapport_identities (store_id, kind, value, shopper_id)
            SELECT v_store, k.kind, k.value, target
            FROM (VALUES ('anonymous_id', v_anonymous, h_anonymous), ('email', v_email, h_email), ('user_id', v_user, h_user))
                 AS k(kind, value, hit)
            WHERE k.value IS NOT NULL AND k.hit IS NULL
            ORDER BY k.kind, k.value;
        END IF;
        resolved := resolved || target;
    END LOOP;
    RETURN QUERY SELECT r.n::integer, r.id FROM unnest(resolved) WITH ORDINALITY AS r(id, n);
END;
$$;
