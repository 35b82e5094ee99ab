-- ReceiptWorker's part of a shopper's timeline (`explain`; the shape is CaptureWorker's 0008): the shopper's orders,
-- and any placed with the address asked about.
CREATE OR REPLACE FUNCTION receipt_shopper_timeline(p_store text, p_shopper bigint, p_email text)
RETURNS TABLE (at timestamptz, rank integer, line text)
LANGUAGE sql STABLE AS $$
    SELECT o.placed_at, 0,
           'order     ' || o.order_id || ' ' || o.status || ': '
           || (SELECT count(*) FROM receipt_order_items i WHERE i.store_id = o.store_id AND i.order_id = o.order_id) || ' items, total '
           || coalesce(rapport_money_text(o.total, o.currency) || ' ' || o.currency, 'no total')
           || '  [message ' || coalesce(o.message_id, '') || ']'
    FROM receipt_orders o WHERE o.store_id = p_store AND (o.shopper_id = p_shopper OR o.email = p_email)
$$;
