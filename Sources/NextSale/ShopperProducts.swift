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
        // Counted first, from reads that lock nothing; then the shoppers locked in key order, as batches, erasure and
        // merges lock them before they touch suggestions: a batch waits for the writes below, not for the counting,
        // and the two cannot deadlock. A shopper erased or merged away meanwhile has no row left to lock and gets
        // no suggestions.
        let rows = try neighbourhoods(of: stale.map { ($0.0, $0.1) }, connection: connection)
        let (stores, shoppers) = (PostgresArray(stale.map(\.0)), PostgresArray(stale.map(\.1)))
        let present = try connection.query(
            """
            SELECT shopper_id FROM receipt_shopper_breadth
            WHERE (store_id, shopper_id) IN (SELECT * FROM unnest(\(stores)::text[], \(shoppers)::bigint[])) ORDER BY store_id, shopper_id FOR UPDATE
            """
        ).decode(Int64.self)
        try connection.execute(
            """
            DELETE FROM receipt_shopper_suggestions
            WHERE (store_id, shopper_id) IN (SELECT * FROM unnest(\(stores)::text[], \(shoppers)::bigint[]))
            """)
        let kept = Set(present)
        let written = rows.filter { kept.contains($0.shopperID) }
        if !written.isEmpty {
            try connection.execute(
                """
                INSERT INTO receipt_shopper_suggestions (store_id, shopper_id, product_id, score)
                SELECT * FROM unnest(\(PostgresArray(written.map(\.store)))::text[], \(PostgresArray(written.map(\.shopperID)))::bigint[],
                                     \(PostgresArray(written.map(\.productID)))::text[], \(PostgresArray(written.map(\.score)))::float8[])
                """)
        }
        try connection.execute(
            """
            UPDATE receipt_shopper_breadth t SET suggested = s.changes, suggested_at = now()
            FROM unnest(\(stores)::text[], \(shoppers)::bigint[], \(PostgresArray(stale.map(\.2)))::bigint[]) AS s(store_id, shopper_id, changes)
            WHERE t.store_id = s.store_id AND t.shopper_id = s.shopper_id
            """)
        return stale.count
    }

    /// One suggestion: a product the shopper's nearest neighbours bought and the shopper did not, and its score.
    struct Suggestion: Equatable {
        var store: String
        var shopperID: Int64
        var productID: String
        var score: Double
    }

    /// What the nearest neighbours of each of `shoppers` bought, less what the shopper bought, best
    /// ``NextSaleTuning/candidatesPerKind`` each. Each profile product's most recent buyers
    /// (``NextSaleTuning/buyersPerProduct``, read once per group of shoppers however many profiles hold it) are the candidate
    /// neighbours, ranked by cosine — products shared ÷ √(their breadth × the shopper's), ties by id — and what the
    /// nearest ``NextSaleTuning/neighbours`` bought is scored by the sum of their similarities, ties by product id.
    ///
    /// PostgreSQL reads the rows through its indexes (four statements, an index probe per key; what the asked shoppers
    /// and their neighbours bought is read whole, the buyers are capped by the tuning) and the counting is done here,
    /// in hash maps. Written as one statement, the same
    /// counting was sorts and aggregates of ~1,700 (shopper, neighbour) rows a shopper: 7 ms of the server's time
    /// each (EXPLAIN ANALYZE, 500 shoppers of a store of 50,000 orders), more than half of its work for an order.
    static func neighbourhoods(
        of shoppers: [(store: String, shopperID: Int64)], groupProducts: Int = neighbourhoodProducts, connection: PostgresConnection
    ) throws -> [Suggestion] {
        guard !shoppers.isEmpty else { return [] }
        // What each asked shopper bought, with their breadth.
        var mine: [Int64: Held] = [:]
        for (store, shopper, breadth, product, lastAt) in try connection.query(
            """
            SELECT a.store_id, a.shopper_id, w.products, p.product_id, p.last_at
            FROM unnest(\(PostgresArray(shoppers.map(\.store)))::text[], \(PostgresArray(shoppers.map(\.shopperID)))::bigint[]) AS a(store_id, shopper_id)
            CROSS JOIN LATERAL (SELECT w.products FROM receipt_shopper_breadth w WHERE w.store_id = a.store_id AND w.shopper_id = a.shopper_id OFFSET 0) w
            CROSS JOIN LATERAL (
                SELECT p.product_id, p.last_at FROM receipt_shopper_products p WHERE p.store_id = a.store_id AND p.shopper_id = a.shopper_id OFFSET 0) p
            """
        ).decode((String, Int64, Int, String, Date).self) {
            mine[shopper, default: Held(store: store, breadth: breadth)].bought.append((product, lastAt))
        }
        // Each profile: the most recently bought products.
        var profiles: [Int64: [String]] = [:]
        for (shopper, held) in mine {
            profiles[shopper] = held.bought.sorted { ($0.lastAt, $1.productID) > ($1.lastAt, $0.productID) }.prefix(NextSaleTuning.profile).map(\.productID)
        }
        // Counted a group at a time, so that what the worker holds stays bounded however diverse the profiles: a group
        // closes at `groupProducts` distinct profile products, at most that many × the buyers read per product
        // (3,000 × 300 = 900,000 buyer rows); the products of the asked shoppers and of their neighbours are read whole.
        var suggestions: [Suggestion] = []
        var group: [Int64] = []
        var products = Set<String>()  // "store\u{0}product" of the group's profiles
        for shopper in profiles.keys.sorted() {
            let keys = (profiles[shopper] ?? []).map { "\(mine[shopper]?.store ?? "")\u{0}\($0)" }
            if !group.isEmpty, products.count + keys.count(where: { !products.contains($0) }) > groupProducts {
                suggestions += try neighbourhoods(of: group, mine: mine, profiles: profiles, connection: connection)
                group.removeAll()
                products.removeAll()
            }
            group.append(shopper)
            products.formUnion(keys)
        }
        suggestions += try neighbourhoods(of: group, mine: mine, profiles: profiles, connection: connection)
        return suggestions
    }

    /// The distinct profile products whose buyers one group of shoppers reads (``neighbourhoods(of:connection:)``).
    static let neighbourhoodProducts = 3_000

    /// What an asked shopper bought (`bought`: product, when last), with their breadth.
    private struct Held {
        var store: String
        var breadth: Int
        var bought: [(productID: String, lastAt: Date)] = []
    }

    /// The suggestions of `group`, shoppers of `mine` with their `profiles`.
    private static func neighbourhoods(of group: [Int64], mine: [Int64: Held], profiles: [Int64: [String]], connection: PostgresConnection) throws
        -> [Suggestion]
    {
        guard !group.isEmpty else { return [] }
        var wanted: [String: Set<String>] = [:]  // store → profile products
        for shopper in group {
            if let store = mine[shopper]?.store { wanted[store, default: []].formUnion(profiles[shopper] ?? []) }
        }
        // Each profile product's most recent buyers, once per (store, product).
        var buyers: [String: [String: [Int64]]] = [:]  // store → product → buyers
        var widths: [Int64: Int] = [:]  // candidate → breadth (shopper ids are unique across stores)
        var candidates: [(store: String, shopperID: Int64)] = []
        for (store, products) in wanted.sorted(by: { $0.key < $1.key }) {
            var seen = Set<Int64>()
            for (product, buyer) in try connection.query(
                """
                SELECT p.product_id, b.shopper_id FROM unnest(\(PostgresArray(products.sorted()))::text[]) AS p(product_id) CROSS JOIN LATERAL (
                    SELECT b.shopper_id FROM receipt_shopper_products b WHERE b.store_id = \(store) AND b.product_id = p.product_id
                    ORDER BY b.last_at DESC LIMIT \(NextSaleTuning.buyersPerProduct)) b
                """
            ).decode((String, Int64).self) {
                buyers[store, default: [:]][product, default: []].append(buyer)
                if seen.insert(buyer).inserted { candidates.append((store, buyer)) }
            }
        }
        // The candidates' breadths, a store at a time (its id sent once).
        for (store, ids) in Dictionary(grouping: candidates, by: \.store).sorted(by: { $0.key < $1.key }) {
            for (shopper, breadth) in try connection.query(
                """
                SELECT w.shopper_id, w.products FROM unnest(\(PostgresArray(ids.map(\.shopperID)))::bigint[]) AS a(shopper_id)
                CROSS JOIN LATERAL (SELECT w.shopper_id, w.products FROM receipt_shopper_breadth w WHERE w.store_id = \(store) AND w.shopper_id = a.shopper_id OFFSET 0) w
                """
            ).decode((Int64, Int).self) {
                widths[shopper] = breadth
            }
        }
        // The nearest neighbours of each shopper.
        var nearest: [Int64: [(neighbour: Int64, similarity: Double)]] = [:]
        var neighbours: [Int64: String] = [:]  // neighbour → store
        for shopper in group {
            guard let held = mine[shopper], let profile = profiles[shopper], let byProduct = buyers[held.store] else { continue }
            var shared: [Int64: Int] = [:]
            for product in profile {
                for buyer in byProduct[product] ?? [] where buyer != shopper { shared[buyer, default: 0] += 1 }
            }
            let own = Double(max(held.breadth, 1))
            let ranked = shared.compactMap { neighbour, count -> (neighbour: Int64, similarity: Double)? in
                guard let width = widths[neighbour] else { return nil }  // gone since (an erasure)
                return (neighbour, Double(count) / (Double(max(width, 1)) * own).squareRoot())
            }.sorted { ($0.similarity, $1.neighbour) > ($1.similarity, $0.neighbour) }.prefix(NextSaleTuning.neighbours)
            nearest[shopper] = Array(ranked)
            for (neighbour, _) in ranked { neighbours[neighbour] = held.store }
        }
        // What the neighbours bought, a store at a time.
        var theirs: [Int64: [String]] = [:]
        for (store, near) in Dictionary(grouping: neighbours.keys, by: { neighbours[$0] ?? "" }).sorted(by: { $0.key < $1.key }) {
            for (neighbour, product) in try connection.query(
                """
                SELECT n.shopper_id, p.product_id FROM unnest(\(PostgresArray(near.sorted()))::bigint[]) AS n(shopper_id) CROSS JOIN LATERAL (
                    SELECT p.product_id FROM receipt_shopper_products p WHERE p.store_id = \(store) AND p.shopper_id = n.shopper_id OFFSET 0) p
                """
            ).decode((Int64, String).self) {
                theirs[neighbour, default: []].append(product)
            }
        }
        // Each shopper's suggestions: the neighbours' products they have not bought, by summed similarity.
        var suggestions: [Suggestion] = []
        for shopper in nearest.keys.sorted() {
            guard let held = mine[shopper], let near = nearest[shopper] else { continue }
            let own = Set(held.bought.map(\.productID))
            var scores: [String: Double] = [:]
            for (neighbour, similarity) in near {
                for product in theirs[neighbour] ?? [] where !own.contains(product) { scores[product, default: 0] += similarity }
            }
            for (product, score) in scores.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }).prefix(NextSaleTuning.candidatesPerKind) {
                suggestions.append(Suggestion(store: held.store, shopperID: shopper, productID: product, score: score))
            }
        }
        return suggestions
    }
}
