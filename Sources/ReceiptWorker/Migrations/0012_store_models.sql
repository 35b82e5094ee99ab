-- Per store, what its backtest (`ReceiptWorker evaluate`) decided: the model, or the store's top sellers when the model
-- did not beat them on the store's own history. No row: the model.
CREATE TABLE receipt_store_models (
    store_id     text        PRIMARY KEY,
    serves       text        NOT NULL CHECK (serves IN ('model', 'popularity')),
    decided_at   timestamptz NOT NULL,
    holdout      integer     NOT NULL,
    tested       integer     NOT NULL,
    model_hit    double precision NOT NULL,
    lead_low     double precision NOT NULL,  -- the lower end of the 95 % interval of model ÷ the better baseline
    popular_hit  double precision NOT NULL,
    buyers_hit   double precision NOT NULL,
    summary      text        NOT NULL
);

-- `explain` shows what the shopper's store is served, and why, when a backtest decided it.
CREATE OR REPLACE FUNCTION receipt_shopper_timeline(p_store text, p_shopper bigint, p_email text)
RETURNS TABLE (at timestamptz, rank integer, line text)
LANGUAGE sql STABLE AS $$
    SELECT o.placed_at, 0,
           'order     ' || o.order_id || ' ' || o.status || ': '
           || (SELECT count(*) FROM receipt_order_items i WHERE i.store_id = o.store_id AND i.order_id = o.order_id) || ' items, total '
           || coalesce(rapport_money_text(o.total, o.currency) || ' ' || o.currency, 'no total')
           || '  [message ' || coalesce(o.message_id, '') || ']'
    FROM receipt_orders o WHERE o.store_id = p_store AND (o.shopper_id = p_shopper OR o.email = p_email)
    UNION ALL
    SELECT m.decided_at, 0,
           'next sale the store is served ' || CASE m.serves WHEN 'model' THEN 'the model' ELSE 'its top sellers (popular_in_store)' END
           || ' — ' || m.summary
    FROM receipt_store_models m WHERE m.store_id = p_store
$$;
