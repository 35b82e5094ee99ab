import Foundation
import Shared
import Synchronization

/// The next-sale model's tables (`receipt_product_stats`, `receipt_transitions`, `receipt_copurchases`,
/// `receipt_category_transitions`, `receipt_daily_sales`, owned by ReceiptWorker's migrations): a batch appends its
/// change to `receipt_model_change_sets` (``record(_:connection:)``, contending on no row), and one compactor at a
/// time folds the changes into the tables (``fold(limit:refreshAfter:now:connection:)``); candidates are read by
/// ``PostgresCandidateSource``.
/// The tables lag the orders by one fold (a second, by default).
public enum PurchaseModelStore {
    /// The advisory lock that makes one fold (or rebuild) at a time.
    static let foldLock: Int64 = 0x7261_7070_6e73_6d6c  // "rappnsml"

    /// The most entries a compactor folds in one transaction (then it folds again at once). Measured at 40,000 orders,
    /// the fold counted: 500,000 was no faster (1,253 and 1,313 orders/s against 1,590 and 1,581, within this machine's
    /// spread).
    public static let foldChunk = 50_000

    /// Appends `changes` (by store) inside the caller's transaction: a row per store and kind, its entries in arrays
    /// (`receipt_model_change_sets`). Measured: a row per entry — some twenty an order — was 4.5 s of `COPY` and
    /// 3.4 s of the fold's `DELETE` at 40,000 orders.
    /// - Throws: ``PostgresError``.
    public static func record(_ changes: [String: PurchaseCounts], connection: PostgresConnection) throws {
        var sets: [[(any PostgresBindable)?]] = []
        func add(_ store: String, _ kind: String, _ entries: [(a: String, b: String?, count: Int)]) {
            let entries = entries.filter { $0.count != 0 }
            guard !entries.isEmpty else { return }
            sets.append([store, kind, PostgresArray(entries.map(\.a)), PostgresArray(entries.map(\.b)), PostgresArray(entries.map(\.count)), entries.count])
        }
        for (store, change) in changes.sorted(by: { $0.key < $1.key }) {
            add(store, "orders", change.orders.map { ($0.key, change.categories[$0.key], $0.value) })
            add(store, "followed", change.followed.map { ($0.key, nil, $0.value) })
            add(store, "transition", change.transitions.map { ($0.key.from, $0.key.to, $0.value) })
            add(store, "together", change.together.map { ($0.key.from, $0.key.to, $0.value) })
            add(store, "category_transition", change.categoryTransitions.map { ($0.key.from, $0.key.to, $0.value) })
            add(store, "daily", change.daily.map { ($0.key.from, $0.key.to, $0.value) })
        }
        guard !sets.isEmpty else { return }
        try connection.copy(into: "receipt_model_change_sets", columns: ["store_id", "kind", "a", "b", "count", "entries"], rows: sets)
    }

    /// Folds the oldest change sets, up to about `limit` entries (at least one set), into the model's tables and
    /// deletes them, in one statement, inside the caller's transaction — unless another transaction is folding (then
    /// 0 at once).
    /// - Returns: How many entries were folded (`limit` or more: there may be more to fold).
    /// - Throws: ``PostgresError``.
    /// - Parameters:
    ///   - refreshAfter: A store whose sales the fold changed has its top sellers recomputed when they are older than
    ///     this (`receipt_top_sellers`).
    ///   - now: The top sellers' 90 days end here.
    @discardableResult
    public static func fold(limit: Int, refreshAfter: Duration = .seconds(60), now: Date = Date(), connection: PostgresConnection) throws -> Int {
        guard try connection.query("SELECT pg_try_advisory_xact_lock(\(foldLock))").first?.decode(Bool.self) ?? false else { return 0 }
        let (folded, stores) = try foldLocked(limit: limit, connection: connection)
        for store in stores {
            let computed =
                try connection.query("SELECT max(computed_at) AS computed_at FROM receipt_top_sellers WHERE store_id = \(store)").first?
                .decode("computed_at", as: Date?.self) ?? nil
            if computed.map({ now.timeIntervalSince($0) >= refreshAfter.seconds }) ?? true {
                try refreshTopSellers(store: store, now: now, connection: connection)
            }
        }
        return folded
    }

    /// Folds every appended change inside the caller's transaction, waiting for any other fold to end first (a
    /// backtest's changes, which no compactor sees).
    /// - Throws: ``PostgresError``.
    static func foldAll(connection: PostgresConnection) throws {
        try connection.query("SELECT pg_advisory_xact_lock(\(foldLock))")
        while try foldLocked(limit: 100_000, connection: connection).0 > 0 {}
    }

    /// Whether every appended change is folded: none waits in `receipt_model_change_sets`, nor in the previous
    /// release's `receipt_model_changes`.
    /// - Throws: ``PostgresError``.
    public static func isFolded(connection: PostgresConnection) throws -> Bool {
        try connection.query("SELECT NOT EXISTS (SELECT FROM receipt_model_change_sets) AND NOT EXISTS (SELECT FROM receipt_model_changes)")
            .first?.decode(Bool.self) ?? false
    }

    /// Recomputes `store`'s top sellers of the 90 days up to `now`.
    static func refreshTopSellers(store: String, now: Date, connection: PostgresConnection) throws {
        try connection.execute("DELETE FROM receipt_top_sellers WHERE store_id = \(store)")
        let since = PurchaseCounts.day(now.addingTimeInterval(-NextSaleTuning.popularWindow))
        let until = PurchaseCounts.day(now)
        try connection.execute(
            """
            INSERT INTO receipt_top_sellers (store_id, product_id, orders, computed_at)
            SELECT \(store), product_id, sum(orders), \(now) FROM receipt_daily_sales
            WHERE store_id = \(store) AND day > \(since)::date AND day <= \(until)::date
            GROUP BY product_id HAVING sum(orders) > 0 ORDER BY 3 DESC, 2 LIMIT \(NextSaleTuning.popular)
            """)
    }

    /// Folds; returns how many entries, and the stores whose daily sales changed. Rows a pod of the previous release
    /// appended to `receipt_model_changes` (one per entry) are moved into sets first.
    private static func foldLocked(limit: Int, connection: PostgresConnection) throws -> (Int, [String]) {
        try connection.execute(
            """
            WITH legacy AS (DELETE FROM receipt_model_changes RETURNING id, store_id, kind, a, b, count)
            INSERT INTO receipt_model_change_sets (store_id, kind, a, b, count, entries)
            SELECT store_id, kind, array_agg(a ORDER BY id), array_agg(b ORDER BY id), array_agg(count ORDER BY id), count(*) FROM legacy
            GROUP BY store_id, kind ORDER BY min(id)
            """)
        func pairs(
            _ table: StaticString, _ kind: StaticString, _ first: StaticString, _ second: StaticString, count: StaticString = "count", cast: StaticString = ""
        ) -> PostgresQuery {
            """
            \(sql: kind) AS (
                INSERT INTO \(sql: table) AS t (store_id, \(sql: first), \(sql: second), \(sql: count))
                SELECT store_id, a, b\(sql: cast), sum(count) FROM moved WHERE kind = '\(sql: kind)' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                ON CONFLICT (store_id, \(sql: first), \(sql: second)) DO UPDATE SET \(sql: count) = t.\(sql: count) + EXCLUDED.\(sql: count)
                RETURNING 1)
            """
        }
        // The oldest sets until `limit` entries are reached (the one crossing it included): the window reads ids and
        // lengths, never the arrays, of at most a thousand sets.
        let query: PostgresQuery = """
            WITH sets AS (
                DELETE FROM receipt_model_change_sets WHERE id IN (
                    SELECT id FROM (
                        SELECT id, sum(entries) OVER (ORDER BY id) - entries AS before
                        FROM receipt_model_change_sets ORDER BY id LIMIT 1000) oldest
                    WHERE before < \(limit))
                RETURNING store_id, kind, a, b, count),
            moved AS (
                SELECT s.store_id, s.kind, e.a, e.b, e.count FROM sets s CROSS JOIN LATERAL unnest(s.a, s.b, s.count) AS e(a, b, count)),
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
            SELECT (SELECT count(*) FROM moved), (SELECT array_agg(DISTINCT store_id)::text FROM sets WHERE kind = 'daily')
            """
        // The upserts' sorts (by store and key) of a large chunk spill to disk at the default 4 MB: 10 MB of temporary
        // files for 308,000 entries (auto_explain).
        try connection.execute("SET LOCAL work_mem = '32MB'")
        let (folded, daily) = try connection.query(query).first?.decode((Int, String?).self) ?? (0, nil)
        let stores =
            daily.map { text in
                text.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").map {
                    $0.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                }
            } ?? []
        return (folded, stores)
    }

    /// Rebuilds `store`'s model from its completed orders (`receipt_orders`, `receipt_order_items`), grouped by
    /// shopper (an order no shopper owns — erased, or recorded before shoppers were shared — counts under its own key):
    /// what `ReceiptWorker rebuild` runs, and `rapport-bench nextsale` after loading its training orders. The caller's
    /// transaction must not have run a statement yet (it is made `REPEATABLE READ`: the orders read and the pending
    /// changes dropped are one snapshot, so a batch committing meanwhile is counted once, by its change folded later).
    /// - Returns: How many customers and orders it counted.
    /// - Throws: ``PostgresError``.
    public static func rebuild(store: String, connection: PostgresConnection) throws -> (customers: Int, orders: Int) {
        try connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        let customers = try PurchaseHistory.store(store, connection: connection)
        var counts = PurchaseCounts()
        var orders = 0
        for customer in customers {
            orders += customer.orders.count
            counts.add(PurchaseCounts(customer: customer.orders))
        }
        try replace(store: store, with: counts, connection: connection)
        try ShopperProducts.rebuild(store: store, connection: connection)
        return (customers.count, orders)
    }

    /// Replaces `store`'s model with `counts` (a rebuild from its orders), inside the caller's transaction, which
    /// must be `REPEATABLE READ` and have read the orders already: the store's pending changes are dropped — they are
    /// in the orders it read — and every other fold waits.
    /// - Throws: ``PostgresError``.
    public static func replace(store: String, with counts: PurchaseCounts, connection: PostgresConnection) throws {
        try connection.query("SELECT pg_advisory_xact_lock(\(foldLock))")
        for table in [
            "receipt_product_stats", "receipt_transitions", "receipt_copurchases", "receipt_category_transitions", "receipt_daily_sales",
            "receipt_model_changes", "receipt_model_change_sets",
        ] {
            try connection.execute("DELETE FROM \(identifier: table) WHERE store_id = \(store)")
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
public struct PostgresCandidateSource {
    /// Whether `receipt_shopper_suggestions` and `receipt_store_models` exist, once seen.
    private static let present = Mutex<(Bool, Bool)>((false, false))

    let connection: PostgresConnection
    let asOf: Date

    public init(connection: PostgresConnection, asOf: Date) {
        self.connection = connection
        self.asOf = asOf
    }

    public func candidates(for queries: [CandidateQuery]) throws -> [Candidates] {
        guard !queries.isEmpty else { return [] }
        // SurveyWorker reads ReceiptWorker's model, whose migrations may be a release behind during a rollout: what
        // they have not created yet is left out rather than failing the batch.
        // Asked until both are there (tables are not dropped), then never again in this process.
        var tables = Self.present.withLock { $0 }
        if !(tables.0 && tables.1) {
            tables =
                try connection.query(
                    "SELECT to_regclass('receipt_shopper_suggestions') IS NOT NULL AS neighbours, to_regclass('receipt_store_models') IS NOT NULL AS choices"
                ).first?.decode((Bool, Bool).self) ?? (false, false)
            Self.present.withLock { $0 = tables }
        }
        var slices: [String: ModelSlice] = [:]
        for store in Set(queries.map(\.storeID)).sorted() {
            let mine = queries.filter { $0.storeID == store }
            slices[store] = try slice(
                store: store, seeds: Set(mine.flatMap(\.seeds.keys)), categories: Set(mine.flatMap(\.categories.keys)),
                interests: Set(mine.flatMap(\.interests)), choices: tables.1)
        }
        var candidates = queries.map { slices[$0.storeID]?.candidates(for: $0) ?? Candidates() }
        if tables.0 {
            for (index, neighbours) in try neighbours(of: queries) { candidates[index].neighbours = neighbours }
        }
        return candidates
    }

    /// "Customers like you" for every query of a shopper: their suggestions as the compactor last computed them
    /// (``ShopperProducts/suggest(store:limit:refreshAfter:connection:)``), one index range each.
    /// - Returns: Each query's candidates, by the query's index.
    func neighbours(of queries: [CandidateQuery]) throws -> [Int: [(productID: String, score: Double)]] {
        let asked = queries.enumerated().compactMap { index, query in query.shopperID.map { (index, query.storeID, $0) } }
        guard !asked.isEmpty else { return [:] }
        var found: [Int: [(productID: String, score: Double)]] = [:]
        for (index, product, score) in try connection.query(
            """
            SELECT a.query, s.product_id, s.score
            FROM unnest(\(PostgresArray(asked.map(\.0)))::int[], \(PostgresArray(asked.map(\.1)))::text[], \(PostgresArray(asked.map(\.2)))::bigint[])
                AS a(query, store_id, shopper_id)
            CROSS JOIN LATERAL (
                SELECT s.product_id, s.score FROM receipt_shopper_suggestions s WHERE s.store_id = a.store_id AND s.shopper_id = a.shopper_id OFFSET 0) s
            ORDER BY 1, 3 DESC, 2
            """
        ).decode((Int, String, Double).self) {
            found[index, default: []].append((product, score))
        }
        return found
    }

    /// What queries with these seeds, categories and interests read of `store`'s model.
    func slice(store: String, seeds: Set<String>, categories: Set<String>, interests: Set<String>, choices: Bool) throws -> ModelSlice {
        var slice = ModelSlice()
        /// The (key, other, count) rows of `query` over `keys` (as the array it is given), by key.
        func pairs(_ keys: Set<String>, _ query: (PostgresArray) -> PostgresQuery) throws -> [String: [(String, Int)]] {
            guard !keys.isEmpty else { return [:] }
            var found: [String: [(String, Int)]] = [:]
            for (key, other, count) in try connection.query(query(PostgresArray(keys.sorted()))).decode((String, String, Int).self) {
                found[key, default: []].append((other, count))
            }
            return found
        }
        if !seeds.isEmpty {
            for (product, orders, followed) in try connection.query(
                "SELECT product_id, orders, followed FROM receipt_product_stats WHERE store_id = \(store) AND product_id = ANY(\(PostgresArray(seeds.sorted()))::text[])"
            ).decode((String, Int, Int).self) {
                slice.orders[product] = orders
                slice.followed[product] = followed
            }
        }
        slice.successors = try pairs(seeds) { keys in
            """
            SELECT u.product, t.to_product, t.count FROM unnest(\(keys)::text[]) AS u(product)
            CROSS JOIN LATERAL (
                SELECT t.to_product, t.count FROM receipt_transitions t
                WHERE t.store_id = \(store) AND t.from_product = u.product AND t.count > 0
                ORDER BY t.count DESC, t.to_product LIMIT \(NextSaleTuning.successorsPerSeed)) t
            ORDER BY 1, 3 DESC, 2
            """
        }
        slice.together = try pairs(seeds) { keys in
            """
            SELECT u.product, t.to_product, t.count FROM unnest(\(keys)::text[]) AS u(product)
            CROSS JOIN LATERAL (
                SELECT t.to_product, t.count FROM receipt_copurchases t
                WHERE t.store_id = \(store) AND t.from_product = u.product AND t.count > 0
                ORDER BY t.count DESC, t.to_product LIMIT \(NextSaleTuning.togetherPerSeed)) t
            ORDER BY 1, 3 DESC, 2
            """
        }
        slice.nextCategories = try pairs(categories) { keys in
            """
            SELECT u.category, c.to_category, c.count FROM unnest(\(keys)::text[]) AS u(category)
            CROSS JOIN LATERAL (
                SELECT c.to_category, c.count FROM receipt_category_transitions c
                WHERE c.store_id = \(store) AND c.from_category = u.category AND c.count > 0
                ORDER BY c.count DESC, c.to_category LIMIT \(NextSaleTuning.nextCategories)) c
            ORDER BY 1, 3 DESC, 2
            """
        }
        slice.byCategory = try pairs(Set(slice.nextCategories.values.flatMap { $0.map(\.0) }).union(interests)) { keys in
            """
            SELECT u.category, p.product_id, p.orders FROM unnest(\(keys)::text[]) AS u(category)
            CROSS JOIN LATERAL (
                SELECT p.product_id, p.orders FROM receipt_product_stats p
                WHERE p.store_id = \(store) AND p.category = u.category AND p.orders > 0
                ORDER BY p.orders DESC, p.product_id LIMIT \(NextSaleTuning.productsPerCategory)) p
            ORDER BY 1, 3 DESC, 2
            """
        }
        slice.popular = try topSellers(store: store)
        slice.popularityOnly = try choices && StoreModelChoice.servesPopularity(store: store, connection: connection)
        return slice
    }

    /// The store's top sellers of the 90 days up to `asOf` (orders containing each): as the last fold computed them
    /// when it did so on `asOf`'s day (the window counts whole days), else — before any fold has, or for another day,
    /// as when the benchmark asks as of each held-out order's time — from the daily sales.
    func topSellers(store: String) throws -> [(String, Int)] {
        let cached = try connection.query(
            """
            SELECT product_id, orders FROM receipt_top_sellers
            WHERE store_id = \(store) AND (computed_at AT TIME ZONE 'UTC')::date = \(PurchaseCounts.day(asOf))::date
            ORDER BY orders DESC, product_id LIMIT \(NextSaleTuning.popular)
            """
        ).decode((String, Int).self)
        guard cached.isEmpty else { return cached }
        let since = PurchaseCounts.day(asOf.addingTimeInterval(-NextSaleTuning.popularWindow))
        let until = PurchaseCounts.day(asOf)
        return try connection.query(
            """
            SELECT product_id, sum(orders)::bigint FROM receipt_daily_sales
            WHERE store_id = \(store) AND day > \(since)::date AND day <= \(until)::date
            GROUP BY product_id HAVING sum(orders) > 0 ORDER BY 2 DESC, 1 LIMIT \(NextSaleTuning.popular)
            """
        ).decode((String, Int).self)
    }
}
