import Foundation
import Shared

/// The next-sale model's tables (`receipt_product_stats`, `receipt_transitions`, `receipt_copurchases`,
/// `receipt_category_transitions`, `receipt_daily_sales`, owned by ReceiptWorker's migrations): a batch appends its
/// change to `receipt_model_changes` (``record(_:connection:)``, contending on no row), and one compactor at a time
/// folds the changes into the tables (``fold(limit:connection:)``); candidates are read by ``PostgresCandidateSource``.
/// The tables lag the orders by one fold (a second, by default).
public enum PurchaseModelStore {
    /// The advisory lock that makes one fold (or rebuild) at a time.
    static let foldLock: Int64 = 0x7261_7070_6e73_6d6c  // "rappnsml"

    /// Appends `changes` (by store) inside the caller's transaction, by `COPY` (a batch's change is some twenty rows
    /// an order: by `INSERT … SELECT unnest(…)` that was 116 ms a batch of 670 orders).
    /// - Throws: ``PostgresError``.
    public static func record(_ changes: [String: PurchaseCounts], connection: PostgresConnection) throws {
        var rows: [(store: String, kind: String, a: String, b: String?, count: Int)] = []
        for (store, change) in changes {
            for (product, count) in change.orders { rows.append((store, "orders", product, change.categories[product], count)) }
            for (product, count) in change.followed { rows.append((store, "followed", product, nil, count)) }
            for (pair, count) in change.transitions { rows.append((store, "transition", pair.from, pair.to, count)) }
            for (pair, count) in change.together { rows.append((store, "together", pair.from, pair.to, count)) }
            for (pair, count) in change.categoryTransitions { rows.append((store, "category_transition", pair.from, pair.to, count)) }
            for (pair, count) in change.daily { rows.append((store, "daily", pair.from, pair.to, count)) }
        }
        rows.removeAll { $0.count == 0 }
        guard !rows.isEmpty else { return }
        try connection.copy(
            into: "receipt_model_changes", columns: ["store_id", "kind", "a", "b", "count"], rows: rows.map { [$0.store, $0.kind, $0.a, $0.b, $0.count] })
    }

    /// Folds up to `limit` of the oldest changes into the model's tables and deletes them, in one statement, inside
    /// the caller's transaction — unless another transaction is folding (then 0 at once).
    /// - Returns: How many changes were folded.
    /// - Throws: ``PostgresError``.
    /// - Parameters:
    ///   - refreshAfter: A store whose sales the fold changed has its top sellers recomputed when they are older than
    ///     this (`receipt_top_sellers`).
    ///   - now: The top sellers' 90 days end here.
    @discardableResult
    public static func fold(limit: Int, refreshAfter: Duration = .seconds(60), now: Date = Date(), connection: PostgresConnection) throws -> Int {
        guard try connection.query("SELECT pg_try_advisory_xact_lock($1)", [foldLock]).first?.decode(Bool.self, at: 0) == true else { return 0 }
        let (folded, stores) = try foldLocked(limit: limit, connection: connection)
        for store in stores {
            let computed = try connection.query("SELECT max(computed_at) FROM receipt_top_sellers WHERE store_id = $1", [store]).first?.decode(Date.self, at: 0)
            if computed.map({ now.timeIntervalSince($0) >= refreshAfter.seconds }) ?? true { try refreshTopSellers(store: store, now: now, connection: connection) }
        }
        return folded
    }

    /// Recomputes `store`'s top sellers of the 90 days up to `now`.
    static func refreshTopSellers(store: String, now: Date, connection: PostgresConnection) throws {
        try connection.execute("DELETE FROM receipt_top_sellers WHERE store_id = $1", [store])
        try connection.execute(
            """
            INSERT INTO receipt_top_sellers (store_id, product_id, orders, computed_at)
            SELECT $1, product_id, sum(orders), $4 FROM receipt_daily_sales
            WHERE store_id = $1 AND day > $2::date AND day <= $3::date
            GROUP BY product_id HAVING sum(orders) > 0 ORDER BY 3 DESC, 2 LIMIT \(NextSaleTuning.popular)
            """,
            [store, PurchaseCounts.day(now.addingTimeInterval(-NextSaleTuning.popularWindow)), PurchaseCounts.day(now), now])
    }

    /// Folds; returns how many changes, and the stores whose daily sales changed.
    private static func foldLocked(limit: Int, connection: PostgresConnection) throws -> (Int, [String]) {
        func pairs(_ table: String, _ kind: String, _ first: String, _ second: String, count: String = "count", cast: String = "") -> String {
            """
            \(kind) AS (
                INSERT INTO \(table) AS t (store_id, \(first), \(second), \(count))
                SELECT store_id, a, b\(cast), sum(count) FROM moved WHERE kind = '\(kind)' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                ON CONFLICT (store_id, \(first), \(second)) DO UPDATE SET \(count) = t.\(count) + EXCLUDED.\(count)
                RETURNING 1)
            """
        }
        let sql = """
            WITH moved AS (
                DELETE FROM receipt_model_changes WHERE id IN (SELECT id FROM receipt_model_changes ORDER BY id LIMIT $1)
                RETURNING store_id, kind, a, b, count),
            products AS (
                INSERT INTO receipt_product_stats AS s (store_id, product_id, category, orders, followed)
                SELECT store_id, a, max(b), coalesce(sum(count) FILTER (WHERE kind = 'orders'), 0), coalesce(sum(count) FILTER (WHERE kind = 'followed'), 0)
                FROM moved WHERE kind IN ('orders', 'followed') GROUP BY store_id, a ORDER BY store_id, a
                ON CONFLICT (store_id, product_id) DO UPDATE
                SET orders = s.orders + EXCLUDED.orders, followed = s.followed + EXCLUDED.followed, category = coalesce(EXCLUDED.category, s.category)
                RETURNING 1),
            \(pairs("receipt_transitions", "transition", "from_product", "to_product")),
            \(pairs("receipt_copurchases", "together", "from_product", "to_product")),
            \(pairs("receipt_category_transitions", "category_transition", "from_category", "to_category")),
            \(pairs("receipt_daily_sales", "daily", "product_id", "day", count: "orders", cast: "::date"))
            SELECT (SELECT count(*) FROM moved), (SELECT array_agg(DISTINCT store_id)::text FROM moved WHERE kind = 'daily')
            """
        let row = try connection.query(sql, [limit]).first
        let stores = try row?.decode(String.self, at: 1).map { text in
            text.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        } ?? []
        return (try row?.decode(Int.self, at: 0) ?? 0, stores)
    }

    /// Replaces `store`'s model with `counts` (a rebuild from its orders), inside the caller's transaction, which
    /// must be `REPEATABLE READ` and have read the orders already: the store's pending changes are dropped — they are
    /// in the orders it read — and every other fold waits.
    /// - Throws: ``PostgresError``.
    public static func replace(store: String, with counts: PurchaseCounts, connection: PostgresConnection) throws {
        try connection.query("SELECT pg_advisory_xact_lock($1)", [foldLock])
        for table in ["receipt_product_stats", "receipt_transitions", "receipt_copurchases", "receipt_category_transitions", "receipt_daily_sales", "receipt_model_changes"] {
            try connection.execute("DELETE FROM \(table) WHERE store_id = $1", [store])
        }
        try record([store: counts], connection: connection)
        while try foldLocked(limit: 100_000, connection: connection).0 > 0 {}
        try refreshTopSellers(store: store, now: Date(), connection: connection)
    }
}

/// Candidates read from the model's tables as of `asOf` (the top sellers' 90 days end there): per store, the rows
/// every query of the batch needs are read once — each distinct seed's strongest successors and co-purchases, each
/// distinct category's next categories and top sellers, through their indexes — into a ``ModelSlice``, which scores
/// each query. Measured: one statement per kind over every (query, seed) pair read the same popular products' rows
/// again for each shopper (160 ms a batch of 220 orders for the successors alone).
public struct PostgresCandidateSource: CandidateSource {
    let connection: PostgresConnection
    let asOf: Date

    public init(connection: PostgresConnection, asOf: Date) {
        self.connection = connection
        self.asOf = asOf
    }

    public func candidates(for queries: [CandidateQuery]) throws -> [Candidates] {
        var slices: [String: ModelSlice] = [:]
        for store in Set(queries.map(\.storeID)).sorted() {
            let mine = queries.filter { $0.storeID == store }
            slices[store] = try slice(
                store: store, seeds: Set(mine.flatMap(\.seeds.keys)), categories: Set(mine.flatMap(\.categories.keys)),
                interests: Set(mine.flatMap(\.interests)))
        }
        return queries.map { slices[$0.storeID]?.candidates(for: $0) ?? Candidates() }
    }

    /// What queries with these seeds, categories and interests read of `store`'s model.
    func slice(store: String, seeds: Set<String>, categories: Set<String>, interests: Set<String>) throws -> ModelSlice {
        var slice = ModelSlice()
        func pairs(_ sql: String, _ keys: Set<String>) throws -> [String: [(String, Int)]] {
            guard !keys.isEmpty else { return [:] }
            var found: [String: [(String, Int)]] = [:]
            for row in try connection.query(sql, [store, PostgresArray(keys.sorted())]) {
                guard let key = try row.decode(String.self, at: 0), let other = try row.decode(String.self, at: 1), let count = try row.decode(Int.self, at: 2)
                else { continue }
                found[key, default: []].append((other, count))
            }
            return found
        }
        if !seeds.isEmpty {
            for row in try connection.query(
                "SELECT product_id, orders, followed FROM receipt_product_stats WHERE store_id = $1 AND product_id = ANY($2::text[])",
                [store, PostgresArray(seeds.sorted())])
            {
                guard let product = try row.decode(String.self, at: 0) else { continue }
                slice.orders[product] = try row.decode(Int.self, at: 1) ?? 0
                slice.followed[product] = try row.decode(Int.self, at: 2) ?? 0
            }
        }
        slice.successors = try pairs(
            """
            SELECT u.product, t.to_product, t.count FROM unnest($2::text[]) AS u(product)
            CROSS JOIN LATERAL (
                SELECT t.to_product, t.count FROM receipt_transitions t
                WHERE t.store_id = $1 AND t.from_product = u.product AND t.count > 0
                ORDER BY t.count DESC, t.to_product LIMIT \(NextSaleTuning.successorsPerSeed)) t
            ORDER BY 1, 3 DESC, 2
            """, seeds)
        slice.together = try pairs(
            """
            SELECT u.product, t.to_product, t.count FROM unnest($2::text[]) AS u(product)
            CROSS JOIN LATERAL (
                SELECT t.to_product, t.count FROM receipt_copurchases t
                WHERE t.store_id = $1 AND t.from_product = u.product AND t.count > 0
                ORDER BY t.count DESC, t.to_product LIMIT \(NextSaleTuning.togetherPerSeed)) t
            ORDER BY 1, 3 DESC, 2
            """, seeds)
        slice.nextCategories = try pairs(
            """
            SELECT u.category, c.to_category, c.count FROM unnest($2::text[]) AS u(category)
            CROSS JOIN LATERAL (
                SELECT c.to_category, c.count FROM receipt_category_transitions c
                WHERE c.store_id = $1 AND c.from_category = u.category AND c.count > 0
                ORDER BY c.count DESC, c.to_category LIMIT \(NextSaleTuning.nextCategories)) c
            ORDER BY 1, 3 DESC, 2
            """, categories)
        slice.byCategory = try pairs(
            """
            SELECT u.category, p.product_id, p.orders FROM unnest($2::text[]) AS u(category)
            CROSS JOIN LATERAL (
                SELECT p.product_id, p.orders FROM receipt_product_stats p
                WHERE p.store_id = $1 AND p.category = u.category AND p.orders > 0
                ORDER BY p.orders DESC, p.product_id LIMIT \(NextSaleTuning.productsPerCategory)) p
            ORDER BY 1, 3 DESC, 2
            """, Set(slice.nextCategories.values.flatMap { $0.map(\.0) }).union(interests))
        slice.popular = try topSellers(store: store)
        return slice
    }

    /// The store's top sellers of the 90 days up to `asOf` (orders containing each): as the last fold computed them,
    /// or, before any has, from the daily sales.
    func topSellers(store: String) throws -> [(String, Int)] {
        let cached = try connection.query(
            "SELECT product_id, orders FROM receipt_top_sellers WHERE store_id = $1 ORDER BY orders DESC, product_id LIMIT \(NextSaleTuning.popular)", [store]
        ).compactMap { row -> (String, Int)? in
            guard let product = try row.decode(String.self, at: 0), let orders = try row.decode(Int.self, at: 1) else { return nil }
            return (product, orders)
        }
        guard cached.isEmpty else { return cached }
        let since = PurchaseCounts.day(asOf.addingTimeInterval(-NextSaleTuning.popularWindow))
        let until = PurchaseCounts.day(asOf)
        return try connection.query(
            """
            SELECT product_id, sum(orders)::bigint FROM receipt_daily_sales
            WHERE store_id = $1 AND day > $2::date AND day <= $3::date
            GROUP BY product_id HAVING sum(orders) > 0 ORDER BY 2 DESC, 1 LIMIT \(NextSaleTuning.popular)
            """, [store, since, until]
        ).compactMap { row in
            guard let product = try row.decode(String.self, at: 0), let orders = try row.decode(Int.self, at: 1) else { return nil }
            return (product, orders)
        }
    }
}
