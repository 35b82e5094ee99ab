-- CaptureWorker's part of a shopper's timeline (`explain`): its events and consent changes, one line each, written
-- here so that the fleet's `explain` reads capture_* tables only through CaptureWorker's own function. The shape
-- every worker's `<prefix>_shopper_timeline` has: `at` (NULL for a line of the header), `rank` (the order among facts
-- of one moment, or among header lines), `line`.
CREATE OR REPLACE FUNCTION capture_shopper_timeline(p_store text, p_shopper bigint, p_email text)
RETURNS TABLE (at timestamptz, rank integer, line text)
LANGUAGE sql STABLE AS $$
    SELECT t.occurred_at, 0, 'event     ' || t.event || '  [message ' || t.message_id || ']'
    FROM capture_timeline t WHERE t.store_id = p_store AND t.shopper_id = p_shopper
    UNION ALL
    SELECT l.occurred_at, 1,
           'consent   ' || l.kind || '  '
           || concat_ws(', ', CASE l.marketing WHEN true THEN 'marketing yes' WHEN false THEN 'marketing no' END,
                        'source ' || l.source, 'opt-in ' || l.opt_in_level, 'text version ' || l.text_version)
           || '  [message ' || l.message_id || ']'
    FROM capture_consent_ledger l WHERE l.store_id = p_store AND l.shopper_id = p_shopper
$$;

-- The contact CaptureWorker keeps for a shopper (that of the address it last captured), for the timeline's header
-- and the decisions about that contact.
CREATE OR REPLACE FUNCTION capture_shopper_contact(p_store text, p_shopper bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT s.contact_id FROM capture_shoppers s WHERE s.store_id = p_store AND s.shopper_id = p_shopper
$$;
