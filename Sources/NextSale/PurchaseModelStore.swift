import Foundation
import Shared

/// The next-sale model's tables (`receipt_product_stats`, `receipt_transitions`, `receipt_copurchases`,
/// `receipt_category_transitions`, `receipt_daily_sales`, owned by ReceiptWorker's migrations): adding a change,
/// and reading candidates (``PostgresCandidateSource``).
public enum PurchaseModelStore {
    /// Adds `changes` (by store) inside the caller's transaction: one upsert per table, keys in order so that two
    /// transactions touching the same rows wait for each other rather than deadlock; rows that fall to zero go.
    /// - Throws: ``PostgresError``.
    public static func apply(_ changes: [String: PurchaseCounts], connection: PostgresConnection) throws {
        let stores = changes.keys.sorted()
        var products: [(store: String, product: String, category: String?, orders: Int, followed: Int)] = []
        for store in stores {
            guard let change = changes[store] else { continue }
            for product in Set(change.orders.keys).union(change.followed.keys).sorted() {
                products.append((store, product, change.categories[product], change.orders[product] ?? 0, change.followed[product] ?? 0))
            }
        }
        if !products.isEmpty {
            try connection.execute(
                """
                INSERT INTO receipt_product_stats AS s (store_id, product_id, category, orders, followed)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                ON CONFLICT (store_id, product_id) DO UPDATE
                SET orders = s.orders + EXCLUDED.orders, followed = s.followed + EXCLUDED.followed, category = coalesce(EXCLUDED.category, s.category)
                """,
                [
                    PostgresArray(products.map(\.store)), PostgresArray(products.map(\.product)),
                    PostgresArray(products.map(\.category) as [(any PostgresBindable)?]), PostgresArray(products.map(\.orders)),
                    PostgresArray(products.map(\.followed)),
                ])
            let fallen = products.filter { $0.orders < 0 }
            if !fallen.isEmpty {
                try connection.execute(
                    """
                    DELETE FROM receipt_product_stats s USING unnest($1::text[], $2::text[]) AS u(store_id, product_id)
                    WHERE s.store_id = u.store_id AND s.product_id = u.product_id AND s.orders <= 0
                    """, [PostgresArray(fallen.map(\.store)), PostgresArray(fallen.map(\.product))])
            }
        }
        try applyPairs("receipt_transitions", ("from_product", "to_product"), stores.map { ($0, changes[$0]?.transitions ?? [:]) }, connection: connection)
        try applyPairs("receipt_copurchases", ("from_product", "to_product"), stores.map { ($0, changes[$0]?.together ?? [:]) }, connection: connection)
        try applyPairs(
            "receipt_category_transitions", ("from_category", "to_category"), stores.map { ($0, changes[$0]?.categoryTransitions ?? [:]) },
            connection: connection)
        try applyPairs("receipt_daily_sales", ("product_id", "day"), stores.map { ($0, changes[$0]?.daily ?? [:]) }, count: "orders", cast: ("text", "date"), connection: connection)
    }

    /// Adds pair counts to `table` (`store_id`, the two key columns, a count column).
    private static func applyPairs(
        _ table: String, _ keys: (String, String), _ changes: [(store: String, pairs: [Pair: Int])], count: String = "count",
        cast: (String, String) = ("text", "text"), connection: PostgresConnection
    ) throws {
        var rows: [(store: String, pair: Pair, count: Int)] = []
        for (store, pairs) in changes {
            for (pair, value) in pairs.sorted(by: { ($0.key.from, $0.key.to) < ($1.key.from, $1.key.to) }) where value != 0 {
                rows.append((store, pair, value))
            }
        }
        guard !rows.isEmpty else { return }
        let (first, second) = keys
        try connection.execute(
            """
            INSERT INTO \(table) AS t (store_id, \(first), \(second), \(count))
            SELECT * FROM unnest($1::text[], $2::\(cast.0)[], $3::\(cast.1)[], $4::bigint[])
            ON CONFLICT (store_id, \(first), \(second)) DO UPDATE SET \(count) = t.\(count) + EXCLUDED.\(count)
            """,
            [PostgresArray(rows.map(\.store)), PostgresArray(rows.map(\.pair.from)), PostgresArray(rows.map(\.pair.to)), PostgresArray(rows.map(\.count))])
        let fallen = rows.filter { $0.count < 0 }
        guard !fallen.isEmpty else { return }
        try connection.execute(
            """
            DELETE FROM \(table) t USING unnest($1::text[], $2::\(cast.0)[], $3::\(cast.1)[]) AS u(store_id, a, b)
            WHERE t.store_id = u.store_id AND t.\(first) = u.a AND t.\(second) = u.b AND t.\(count) <= 0
            """,
            [PostgresArray(fallen.map(\.store)), PostgresArray(fallen.map(\.pair.from)), PostgresArray(fallen.map(\.pair.to))])
    }
}

/// Candidates read from the model's tables as of `asOf` (the top sellers' 90 days end there): one statement per kind
/// for all queries, each seed's strongest rows read through their index (``NextSaleTuning``).
public struct PostgresCandidateSource: CandidateSource {
    let connection: PostgresConnection
    let asOf: Date

    public init(connection: PostgresConnection, asOf: Date) {
        self.connection = connection
        self.asOf = asOf
    }

    public func candidates(for queries: [CandidateQuery]) throws -> [Candidates] {
        var result = [Candidates](repeating: Candidates(), count: queries.count)
        guard !queries.isEmpty else { return result }
        var seeds: [(n: Int, store: String, product: String, weight: Double)] = []
        var categories: [(n: Int, store: String, category: String, weight: Double)] = []
        var interests: [(n: Int, store: String, category: String, weight: Double)] = []
        for (n, query) in queries.enumerated() {
            for (product, weight) in query.seeds.sorted(by: { $0.key < $1.key }) { seeds.append((n, query.storeID, product, weight)) }
            for (category, weight) in query.categories.sorted(by: { $0.key < $1.key }) { categories.append((n, query.storeID, category, weight)) }
            for category in Set(query.interests).sorted() { interests.append((n, query.storeID, category, 1)) }
        }
        let seedParameters: [(any PostgresBindable)?] = [
            PostgresArray(seeds.map(\.n)), PostgresArray(seeds.map(\.store)), PostgresArray(seeds.map(\.product)), PostgresArray(seeds.map(\.weight)),
            NextSaleTuning.confidenceShrinkage,
        ]
        func scored(_ sql: String, _ parameters: [(any PostgresBindable)?], into keyPath: WritableKeyPath<Candidates, [(productID: String, score: Double)]>) throws {
            for row in try connection.query(sql, parameters) {
                guard let n = try row.decode(Int.self, at: 0), let product = try row.decode(String.self, at: 1), let score = try row.decode(Double.self, at: 2),
                    result.indices.contains(n)
                else { continue }
                result[n][keyPath: keyPath].append((product, score))
            }
        }
        if !seeds.isEmpty {
            try scored(
                """
                SELECT q.n, t.to_product, sum(q.weight * t.count / (coalesce(p.followed, 0) + $5::float8))
                FROM unnest($1::int[], $2::text[], $3::text[], $4::float8[]) AS q(n, store_id, product_id, weight)
                LEFT JOIN receipt_product_stats p ON p.store_id = q.store_id AND p.product_id = q.product_id
                CROSS JOIN LATERAL (
                    SELECT t.to_product, t.count FROM receipt_transitions t
                    WHERE t.store_id = q.store_id AND t.from_product = q.product_id
                    ORDER BY t.count DESC, t.to_product LIMIT \(NextSaleTuning.successorsPerSeed)) t
                GROUP BY q.n, t.to_product
                """, seedParameters, into: \.successors)
            try scored(
                """
                SELECT q.n, t.to_product, sum(q.weight * t.count / (coalesce(p.orders, 0) + $5::float8))
                FROM unnest($1::int[], $2::text[], $3::text[], $4::float8[]) AS q(n, store_id, product_id, weight)
                LEFT JOIN receipt_product_stats p ON p.store_id = q.store_id AND p.product_id = q.product_id
                CROSS JOIN LATERAL (
                    SELECT t.to_product, t.count FROM receipt_copurchases t
                    WHERE t.store_id = q.store_id AND t.from_product = q.product_id
                    ORDER BY t.count DESC, t.to_product LIMIT \(NextSaleTuning.togetherPerSeed)) t
                GROUP BY q.n, t.to_product
                """, seedParameters, into: \.together)
        }
        if !categories.isEmpty {
            try scored(
                """
                WITH shares AS (
                    SELECT q.n, q.store_id, c.to_category, sum(q.weight * c.count) AS share
                    FROM unnest($1::int[], $2::text[], $3::text[], $4::float8[]) AS q(n, store_id, category, weight)
                    CROSS JOIN LATERAL (
                        SELECT c.to_category, c.count FROM receipt_category_transitions c
                        WHERE c.store_id = q.store_id AND c.from_category = q.category
                        ORDER BY c.count DESC, c.to_category LIMIT \(NextSaleTuning.nextCategories)) c
                    GROUP BY q.n, q.store_id, c.to_category),
                ranked AS (SELECT *, row_number() OVER (PARTITION BY n ORDER BY share DESC, to_category) AS r FROM shares)
                SELECT ranked.n, p.product_id, sum(ranked.share * p.orders)
                FROM ranked CROSS JOIN LATERAL (
                    SELECT p.product_id, p.orders FROM receipt_product_stats p
                    WHERE p.store_id = ranked.store_id AND p.category = ranked.to_category
                    ORDER BY p.orders DESC, p.product_id LIMIT \(NextSaleTuning.productsPerCategory)) p
                WHERE ranked.r <= \(NextSaleTuning.nextCategories)
                GROUP BY ranked.n, p.product_id
                """,
                [PostgresArray(categories.map(\.n)), PostgresArray(categories.map(\.store)), PostgresArray(categories.map(\.category)), PostgresArray(categories.map(\.weight))],
                into: \.categoryNext)
        }
        if !interests.isEmpty {
            try scored(
                """
                SELECT q.n, p.product_id, sum(p.orders)::float8
                FROM unnest($1::int[], $2::text[], $3::text[]) AS q(n, store_id, category)
                CROSS JOIN LATERAL (
                    SELECT p.product_id, p.orders FROM receipt_product_stats p
                    WHERE p.store_id = q.store_id AND p.category = q.category
                    ORDER BY p.orders DESC, p.product_id LIMIT \(NextSaleTuning.productsPerCategory)) p
                GROUP BY q.n, p.product_id
                """,
                [PostgresArray(interests.map(\.n)), PostgresArray(interests.map(\.store)), PostgresArray(interests.map(\.category))], into: \.interests)
        }
        for store in Set(queries.map(\.storeID)) {
            let popular = try topSellers(store: store)
            for n in queries.indices where queries[n].storeID == store { result[n].popular = popular }
        }
        return result
    }

    /// The store's top sellers of the 90 days up to `asOf` (orders containing each).
    func topSellers(store: String) throws -> [(productID: String, score: Double)] {
        let since = PurchaseCounts.day(asOf.addingTimeInterval(-NextSaleTuning.popularWindow))
        let until = PurchaseCounts.day(asOf)
        return try connection.query(
            """
            SELECT product_id, sum(orders)::float8 FROM receipt_daily_sales
            WHERE store_id = $1 AND day > $2::date AND day <= $3::date
            GROUP BY product_id HAVING sum(orders) > 0 ORDER BY 2 DESC, 1 LIMIT \(NextSaleTuning.popular)
            """, [store, since, until]
        ).compactMap { row in
            guard let product = try row.decode(String.self, at: 0), let score = try row.decode(Double.self, at: 1) else { return nil }
            return (product, score)
        }
    }
}
