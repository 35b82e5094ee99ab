-- Stored state of :shoppers shoppers of store :'store', as CaptureWorker leaves it: a contact with marketing consent,
-- a shopper linked to it with an anonymous id and an email identity (every other one a user id too, added after the statistics), a consent-ledger row, a welcome offer sent (a
-- decision), a product interest, a timeline entry and a processed message each. Used by the plan test and by `rapport-bench capture --shoppers N`, so that
-- both measure against tables of realistic size. Shopper k's anonymous id is `seed-anon-k`, its email
-- `seed-k@example.com` (k from 1). Run with psql variables, or with the placeholders replaced.
WITH contacts AS (
    INSERT INTO rapport_contacts (store_id, email, transactional_ok, marketing_consent, consent_level, updated_at)
    SELECT :'store', 'seed-' || g || '@example.com', true, true, 'single', now() - interval '40 days'
    FROM generate_series(1, :shoppers) AS g
    RETURNING contact_id, email
)
INSERT INTO capture_shoppers (store_id, shopper_id, email, contact_id, first_name, welcome_state, created_at, updated_at)
SELECT :'store', nextval(pg_get_serial_sequence('rapport_shoppers', 'shopper_id')), email, contact_id, 'Seed', 'sent',
       now() - interval '40 days', now() - interval '40 days'
FROM contacts;

INSERT INTO rapport_shoppers (store_id, shopper_id, created_at)
SELECT store_id, shopper_id, created_at FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%';

INSERT INTO rapport_identities (store_id, kind, value, shopper_id, first_seen)
SELECT store_id, 'anonymous_id', 'seed-anon-' || substring(email FROM 'seed-([0-9]+)@'), shopper_id, created_at
FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%'
UNION ALL
SELECT store_id, 'email', email, shopper_id, created_at FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%'
;

INSERT INTO capture_consent_ledger (store_id, shopper_id, message_id, kind, marketing, source, opt_in_level, occurred_at)
SELECT store_id, shopper_id, 'seed-capture-' || shopper_id, 'consent', true, 'popup', 'single', created_at
FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%';

INSERT INTO rapport_contact_decisions (store_id, contact_id, subject, worker, template, category, decision, reason, command_id,
                                       causation_id, decided_at)
SELECT store_id, contact_id, 'capture:' || shopper_id, 'CaptureWorker', 'welcome_offer', 'marketing', 'sent', 'permitted',
       'seed-' || shopper_id, 'seed-capture-' || shopper_id, created_at
FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%';

INSERT INTO capture_interests (store_id, shopper_id, kind, item, views, adds, last_at)
SELECT store_id, shopper_id, 'product', 'p-' || (shopper_id % 2000), 1, 0, created_at
FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%';

INSERT INTO capture_timeline (store_id, shopper_id, message_id, event, occurred_at)
SELECT store_id, shopper_id, 'seed-capture-' || shopper_id, 'Email Captured', created_at
FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%';

INSERT INTO rapport_processed_messages (group_id, store_id, message_id, processed_at)
SELECT :'group', store_id, 'seed-capture-' || shopper_id, now() - interval '1 day' FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%';

ANALYZE;

-- Every other shopper has logged in since the statistics were taken: user ids the planner does not know about, as in
-- a store whose shoppers began to log in after the last ANALYZE. A plan that trusts the statistics reads them all.
INSERT INTO rapport_identities (store_id, kind, value, shopper_id, first_seen)
SELECT store_id, 'user_id', 'seed-user-' || substring(email FROM 'seed-([0-9]+)@'), shopper_id, created_at
FROM capture_shoppers WHERE store_id = :'store' AND email LIKE 'seed-%' AND shopper_id % 2 = 0;
