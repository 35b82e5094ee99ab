import Foundation
import Shared

/// What each shopper bought (`receipt_shopper_products`, with each shopper's count of distinct products in
/// `receipt_shopper_breadth`): the profiles "customers like you" compares, kept as orders arrive. A batch adds each
/// customer's change (``change(from:to:)``, a delta like ``PurchaseCounts``, so that two transactions touching one
/// shopper add up), a refund takes its order out, ``rebuild(store:connection:)`` recomputes a store's from its orders.
/// Each shopper's suggestions — what their nearest neighbours bought (`receipt_shopper_suggestions`) — are computed
/// off the order path, by ``suggest(store:limit:refreshAfter:connection:)``, for the shoppers whose products changed.
public enum ShopperProducts {
    /// The advisory lock that makes one suggestion round at a time across replicas.
    public static let suggestionLock: Int64 = 0x7261_7070_7375_6767  // "rappsugg"
    /// One row's change: `orders` added to the orders that held the product, `lastAt` when the shopper last bought it
    /// after the change (`nil` when they no longer have: the row goes once it reaches zero).
    public struct Change: Sendable, Equatable {
        public var productID: String
        public var orders: Int
        public var lastAt: Date?
    }

    /// The rows of one customer whose completed orders go from `before` to `after`.
    public static func change(from before: [PurchasedOrder], to after: [PurchasedOrder]) -> [Change] {
        func summary(_ orders: [PurchasedOrder]) -> [String: (orders: Int, last: Date)] {
            var bought: [String: (orders: Int, last: Date)] = [:]
            for order in orders {
                for product in order.products {
                    let seen = bought[product.id]
                    bought[product.id] = ((seen?.orders ?? 0) + 1, max(seen?.last ?? order.placedAt, order.placedAt))
                }
            }
            return bought
        }
        let old = summary(before)
        let new = summary(after)
        var changes: [Change] = []
        for (product, now) in new where old[product].map({ $0.orders != now.orders || $0.last != now.last }) ?? true {
            changes.append(Change(productID: product, orders: now.orders - (old[product]?.orders ?? 0), lastAt: now.last))
        }
        for (product, was) in old where new[product] == nil { changes.append(Change(productID: product, orders: -was.orders, lastAt: nil)) }
        return changes.sorted { $0.productID < $1.productID }
    }

    /// Adds the changes of `customers` (store, shopper, rows) inside the caller's transaction: one upsert of the rows in key order
    /// (two batches wait rather than deadlock), a delete of the rows that reached zero when something was taken out,
    /// and one upsert of the changed shoppers' breadths, which counts a change and makes their suggestions stale.
    /// - Throws: ``PostgresError``.
    public static func record(_ customers: [(store: String, shopperID: Int64, changes: [Change])], connection: PostgresConnection) throws {
        let sorted = customers.filter { !$0.changes.isEmpty }.sorted { ($0.store, $0.shopperID) < ($1.store, $1.shopperID) }
        let rows = sorted.flatMap { customer in customer.changes.map { (customer.store, customer.shopperID, $0) } }
        guard !rows.isEmpty else { return }
        let keys = (PostgresArray(rows.map(\.0)), PostgresArray(rows.map(\.1)), PostgresArray(rows.map(\.2.productID)))
        try connection.execute(
            """
            INSERT INTO receipt_shopper_products AS t (store_id, shopper_id, product_id, orders, last_at)
            SELECT s, h, p, n, coalesce(l, '-infinity')
            FROM unnest(\(keys.0)::text[], \(keys.1)::bigint[], \(keys.2)::text[], \(PostgresArray(rows.map(\.2.orders)))::int[],
                        \(PostgresArray(rows.map(\.2.lastAt)))::timestamptz[]) AS c(s, h, p, n, l)
            ON CONFLICT (store_id, shopper_id, product_id) DO UPDATE
            SET orders = t.orders + EXCLUDED.orders,
                last_at = CASE WHEN EXCLUDED.last_at = '-infinity' THEN t.last_at WHEN EXCLUDED.orders > 0 THEN greatest(t.last_at, EXCLUDED.last_at)
                               ELSE EXCLUDED.last_at END
            """)
        if rows.contains(where: { $0.2.orders < 0 }) {
            try connection.execute(
                """
                DELETE FROM receipt_shopper_products
                WHERE (store_id, shopper_id, product_id) IN (SELECT * FROM unnest(\(keys.0)::text[], \(keys.1)::bigint[], \(keys.2)::text[])) AND orders <= 0
                """)
        }
        // Each changed shopper's breadth counted from their rows (not added up: two batches adding one new product
        // would count it twice), and a change counted: their suggestions are stale (``suggest(store:limit:refreshAfter:connection:)``).
        let (stores, shoppers) = (PostgresArray(sorted.map(\.store)), PostgresArray(sorted.map(\.shopperID)))
        let emptied = try connection.query(
            """
            INSERT INTO receipt_shopper_breadth AS t (store_id, shopper_id, products)
            SELECT c.store_id, c.shopper_id, (SELECT count(*) FROM receipt_shopper_products p WHERE p.store_id = c.store_id AND p.shopper_id = c.shopper_id)
            FROM unnest(\(stores)::text[], \(shoppers)::bigint[]) AS c(store_id, shopper_id)
            ON CONFLICT (store_id, shopper_id) DO UPDATE SET products = EXCLUDED.products, changes = t.changes + 1, changed_at = EXCLUDED.changed_at
            RETURNING products = 0 AS empty
            """
        ).decode(Bool.self).contains(true)
        // A shopper whose every order was refunded has no profile left, nor suggestions.
        guard emptied else { return }
        try connection.execute(
            """
            DELETE FROM receipt_shopper_suggestions s USING receipt_shopper_breadth b
            WHERE (b.store_id, b.shopper_id) IN (SELECT * FROM unnest(\(stores)::text[], \(shoppers)::bigint[])) AND b.products = 0
              AND s.store_id = b.store_id AND s.shopper_id = b.shopper_id
            """)
        try connection.execute(
            """
            DELETE FROM receipt_shopper_breadth
            WHERE (store_id, shopper_id) IN (SELECT * FROM unnest(\(stores)::text[], \(shoppers)::bigint[])) AND products = 0
            """)
    }

    /// Recomputes `store`'s rows from its completed orders with a shopper (an erased shopper's orders have none),
    /// inside the caller's transaction; every shopper's suggestions are dropped and left for the compactor to
    /// compute (``suggest(store:limit:refreshAfter:connection:)``: about 5 ms of PostgreSQL a shopper, measured).
    /// - Throws: ``PostgresError``.
    public static func rebuild(store: String, connection: PostgresConnection) throws {
        try connection.execute("DELETE FROM receipt_shopper_products WHERE store_id = \(store)")
        try connection.execute("DELETE FROM receipt_shopper_breadth WHERE store_id = \(store)")
        try connection.execute(
            """
            INSERT INTO receipt_shopper_products (store_id, shopper_id, product_id, orders, last_at)
            SELECT o.store_id, o.shopper_id, i.product_id, count(DISTINCT o.order_id), max(o.placed_at)
            FROM receipt_orders o JOIN receipt_order_items i ON i.store_id = o.store_id AND i.order_id = o.order_id
            WHERE o.store_id = \(store) AND o.status = 'completed' AND o.shopper_id IS NOT NULL
            GROUP BY 1, 2, 3
            """)
        try connection.execute(
            """
            INSERT INTO receipt_shopper_breadth (store_id, shopper_id, products)
            SELECT store_id, shopper_id, count(*) FROM receipt_shopper_products WHERE store_id = \(store) GROUP BY 1, 2
            """)
        try connection.execute("DELETE FROM receipt_shopper_suggestions WHERE store_id = \(store)")
    }

    /// Recomputes the suggestions of up to `limit` shoppers whose products changed since theirs were computed (of
    /// `store`, or of every store), the longest waiting first, skipping those computed less than `refreshAfter` ago:
    /// what the model's compactor runs each round, and a rebuild and the backtest until none is left.
    /// - Returns: How many shoppers it recomputed.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public static func suggest(store: String? = nil, limit: Int, refreshAfter: Duration, connection: PostgresConnection) throws -> Int {
        let stale = try connection.query(
            """
            SELECT store_id, shopper_id, changes FROM receipt_shopper_breadth
            WHERE (suggested IS NULL OR suggested < changes) AND (\(store)::text IS NULL OR store_id = \(store))
              AND (suggested_at IS NULL OR suggested_at <= now() - \(refreshAfter.seconds) * interval '1 second')
            ORDER BY changed_at LIMIT \(limit)
            """
        ).decode((String, Int64, Int64).self)
        guard !stale.isEmpty else { return 0 }
        let (stores, shoppers) = (PostgresArray(stale.map(\.0)), PostgresArray(stale.map(\.1)))
        try connection.execute(
            """
            DELETE FROM receipt_shopper_suggestions
            WHERE (store_id, shopper_id) IN (SELECT * FROM unnest(\(stores)::text[], \(shoppers)::bigint[]))
            """)
        // The planner cannot know how many rows the arrays hold and would join the CTEs by nested loops (measured:
        // 32 s for 1,000 shoppers of a 40,000-order store, 8.7 s with hash and merge joins); the index probes are
        // LATERAL and stay loops. The sorts and aggregates of a thousand shoppers' neighbours need more than 4 MB.
        try connection.execute("SET LOCAL work_mem = '32MB'")
        try connection.execute("SET LOCAL enable_nestloop = off")
        try connection.execute(
            """
            INSERT INTO receipt_shopper_suggestions (store_id, shopper_id, product_id, score)
            \(neighbourhoods(stores: stores, shoppers: shoppers))
            """)
        try connection.execute("SET LOCAL enable_nestloop = on")
        // The shoppers marked last, in key order as batches lock them: a batch waits for this commit, not for the
        // neighbours' search, and the two cannot deadlock.
        try connection.query(
            """
            SELECT 1 FROM receipt_shopper_breadth
            WHERE (store_id, shopper_id) IN (SELECT * FROM unnest(\(stores)::text[], \(shoppers)::bigint[])) ORDER BY store_id, shopper_id FOR UPDATE
            """)
        try connection.execute(
            """
            UPDATE receipt_shopper_breadth t SET suggested = s.changes, suggested_at = now()
            FROM unnest(\(stores)::text[], \(shoppers)::bigint[], \(PostgresArray(stale.map(\.2)))::bigint[]) AS s(store_id, shopper_id, changes)
            WHERE t.store_id = s.store_id AND t.shopper_id = s.shopper_id
            """)
        return stale.count
    }

    /// What the nearest neighbours of each of the shoppers bought, less what the shopper bought, best
    /// ``NextSaleTuning/candidatesPerKind`` each: (store, shopper, product, score) rows. Each profile product's most
    /// recent buyers (``NextSaleTuning/buyersPerProduct``, through the buyers' index, read once however many profiles
    /// hold it) are the candidate neighbours, ranked by cosine — products shared ÷ √(their breadth × the shopper's) —
    /// and what the nearest ``NextSaleTuning/neighbours`` bought (each neighbour's products read once) is scored by
    /// the sum of their similarities. Every read is an index probe (`OFFSET 0` keeps each subquery one), bounded by
    /// the tuning, not by the store.
    static func neighbourhoods(stores: PostgresArray, shoppers: PostgresArray) -> PostgresQuery {
        """
        WITH asked AS (
            SELECT a.store_id, a.shopper_id, w.products AS breadth
            FROM unnest(\(stores)::text[], \(shoppers)::bigint[]) AS a(store_id, shopper_id) CROSS JOIN LATERAL (
                SELECT w.products FROM receipt_shopper_breadth w WHERE w.store_id = a.store_id AND w.shopper_id = a.shopper_id OFFSET 0) w),
        mine AS (
            SELECT a.store_id, a.shopper_id, a.breadth, p.product_id, p.last_at
            FROM asked a CROSS JOIN LATERAL (
                SELECT p.product_id, p.last_at FROM receipt_shopper_products p WHERE p.store_id = a.store_id AND p.shopper_id = a.shopper_id OFFSET 0) p),
        profile AS (
            SELECT * FROM (
                SELECT m.*, row_number() OVER (PARTITION BY m.store_id, m.shopper_id ORDER BY m.last_at DESC, m.product_id) AS recency FROM mine m) r
            WHERE recency <= \(NextSaleTuning.profile)),
        buyers AS (
            SELECT p.store_id, p.product_id, b.shopper_id
            FROM (SELECT DISTINCT store_id, product_id FROM profile) p CROSS JOIN LATERAL (
                SELECT b.shopper_id FROM receipt_shopper_products b WHERE b.store_id = p.store_id AND b.product_id = p.product_id
                ORDER BY b.last_at DESC LIMIT \(NextSaleTuning.buyersPerProduct)) b),
        widths AS (
            SELECT n.store_id, n.neighbour, w.products
            FROM (SELECT DISTINCT store_id, shopper_id AS neighbour FROM buyers) n CROSS JOIN LATERAL (
                SELECT w.products FROM receipt_shopper_breadth w WHERE w.store_id = n.store_id AND w.shopper_id = n.neighbour OFFSET 0) w),
        shared AS (
            SELECT q.store_id, q.shopper_id, b.shopper_id AS neighbour, count(*) / sqrt(greatest(min(w.products), 1)::float8 * greatest(min(q.breadth), 1)) AS similarity
            FROM profile q JOIN buyers b ON b.store_id = q.store_id AND b.product_id = q.product_id AND b.shopper_id <> q.shopper_id
            JOIN widths w ON w.store_id = b.store_id AND w.neighbour = b.shopper_id
            GROUP BY q.store_id, q.shopper_id, b.shopper_id),
        nearest AS (
            SELECT * FROM (
                SELECT s.*, row_number() OVER (PARTITION BY s.store_id, s.shopper_id ORDER BY s.similarity DESC, s.neighbour) AS rank FROM shared s) n
            WHERE rank <= \(NextSaleTuning.neighbours)),
        bought AS MATERIALIZED (
            SELECT n.store_id, n.neighbour, p.product_id
            FROM (SELECT DISTINCT store_id, neighbour FROM nearest) n CROSS JOIN LATERAL (
                SELECT p.product_id FROM receipt_shopper_products p WHERE p.store_id = n.store_id AND p.shopper_id = n.neighbour OFFSET 0) p),
        scored AS (
            SELECT n.store_id, n.shopper_id, b.product_id, sum(n.similarity) AS score,
                   row_number() OVER (PARTITION BY n.store_id, n.shopper_id ORDER BY sum(n.similarity) DESC, b.product_id) AS rank
            FROM nearest n JOIN bought b ON b.store_id = n.store_id AND b.neighbour = n.neighbour
            WHERE NOT EXISTS (SELECT FROM mine m WHERE m.store_id = n.store_id AND m.shopper_id = n.shopper_id AND m.product_id = b.product_id)
            GROUP BY n.store_id, n.shopper_id, b.product_id)
        SELECT store_id, shopper_id, product_id, score FROM scored WHERE rank <= \(NextSaleTuning.candidatesPerKind)
        """
    }
}
