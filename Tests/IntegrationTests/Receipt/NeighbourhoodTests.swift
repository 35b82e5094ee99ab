import Foundation
import Shared
import Testing

@testable import NextSale
@testable import ReceiptWorker

/// "Customers like you" is counted in the worker from rows PostgreSQL reads through its indexes. It must find what
/// the definition says — the same suggestions as the whole computation written as one SQL statement (the way it was
/// computed before, kept here as the reference), shopper for shopper and score for score.
@Suite struct NeighbourhoodTests {
    /// The definition in SQL: profiles of the most recent products, each product's most recent buyers, cosine over
    /// shared products, the nearest neighbours, and what they bought less what the shopper bought, summed.
    static let reference = """
        WITH mine AS (
            SELECT w.store_id, w.shopper_id, w.products AS breadth, p.product_id, p.last_at
            FROM receipt_shopper_breadth w JOIN receipt_shopper_products p USING (store_id, shopper_id)),
        profile AS (
            SELECT * FROM (
                SELECT m.*, row_number() OVER (PARTITION BY m.store_id, m.shopper_id ORDER BY m.last_at DESC, m.product_id COLLATE "C") AS recency FROM mine m) r
            WHERE recency <= \(NextSaleTuning.profile)),
        buyers AS (
            SELECT p.store_id, p.product_id, b.shopper_id
            FROM (SELECT DISTINCT store_id, product_id FROM profile) p CROSS JOIN LATERAL (
                SELECT b.shopper_id FROM receipt_shopper_products b WHERE b.store_id = p.store_id AND b.product_id = p.product_id
                ORDER BY b.last_at DESC LIMIT \(NextSaleTuning.buyersPerProduct)) b),
        shared AS (
            SELECT q.store_id, q.shopper_id, b.shopper_id AS neighbour,
                   count(*) / sqrt(greatest(min(w.products), 1)::float8 * greatest(min(q.breadth), 1)) AS similarity
            FROM profile q JOIN buyers b ON b.store_id = q.store_id AND b.product_id = q.product_id AND b.shopper_id <> q.shopper_id
            JOIN receipt_shopper_breadth w ON w.store_id = b.store_id AND w.shopper_id = b.shopper_id
            GROUP BY q.store_id, q.shopper_id, b.shopper_id),
        nearest AS (
            SELECT * FROM (
                SELECT s.*, row_number() OVER (PARTITION BY s.store_id, s.shopper_id ORDER BY s.similarity DESC, s.neighbour) AS rank FROM shared s) n
            WHERE rank <= \(NextSaleTuning.neighbours)),
        scored AS (
            SELECT n.store_id, n.shopper_id, b.product_id, sum(n.similarity) AS score,
                   row_number() OVER (PARTITION BY n.store_id, n.shopper_id ORDER BY sum(n.similarity) DESC, b.product_id COLLATE "C") AS rank
            FROM nearest n JOIN receipt_shopper_products b ON b.store_id = n.store_id AND b.shopper_id = n.neighbour
            WHERE NOT EXISTS (
                SELECT FROM receipt_shopper_products m WHERE m.store_id = n.store_id AND m.shopper_id = n.shopper_id AND m.product_id = b.product_id)
            GROUP BY n.store_id, n.shopper_id, b.product_id)
        SELECT store_id, shopper_id, product_id, score FROM scored WHERE rank <= \(NextSaleTuning.candidatesPerKind)
        """

    @Test func theWorkersCountingFindsWhatTheDefinitionSays() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { postgres.close() }
            try await WorkerApp.migrate(descriptor: ReceiptWorker.descriptor, postgres: postgres, logger: TestEnvironment.logger, timeout: .seconds(30))
            // Two stores; 700 shoppers with 1–120 purchases each of 300 products, the popular ones bought by more than
            // the buyers read per product, some shoppers with more products than a profile holds; each shopper's
            // purchases in up to four orders, the products of one order bought at the same moment.
            let seeded = try await postgres.withConnection { connection in
                try connection.executeScript(
                    """
                    SELECT setseed(0.31);
                    INSERT INTO receipt_shopper_products (store_id, shopper_id, product_id, orders, last_at)
                    SELECT DISTINCT ON (store_id, shopper_id, product_id) store_id, shopper_id, product_id, 1,
                           timestamptz '2026-01-01' + (shopper_id * 10 + floor(random() * 4)) * interval '1 minute'
                    FROM (
                        SELECT CASE WHEN s % 7 = 0 THEN 'other' ELSE 'shop' END AS store_id, s AS shopper_id,
                               'p-' || floor(300 * power(random(), 2))::int AS product_id
                        FROM generate_series(1, 700) s, generate_series(1, 1 + (s * 37) % 120) k) x;
                    INSERT INTO receipt_shopper_breadth (store_id, shopper_id, products)
                    SELECT store_id, shopper_id, count(*) FROM receipt_shopper_products GROUP BY 1, 2;
                    ANALYZE receipt_shopper_products, receipt_shopper_breadth;
                    """)
                return try connection.query(
                    """
                    SELECT (SELECT max(n) FROM (SELECT count(*) AS n FROM receipt_shopper_products GROUP BY store_id, product_id) x),
                           (SELECT max(products) FROM receipt_shopper_breadth)
                    """
                ).first?.decode((Int, Int).self) ?? (0, 0)
            }
            #expect(seeded.0 > NextSaleTuning.buyersPerProduct, "some products have more buyers than are read")
            #expect(seeded.1 > NextSaleTuning.profile, "some shoppers bought more than a profile holds")
            try await postgres.withTransaction { _ = try ShopperProducts.suggest(limit: 10_000, refreshAfter: .zero, connection: $0) }
            let (worker, grouped, definition) = try await postgres.withConnection { connection in
                let shoppers = try connection.query("SELECT store_id, shopper_id FROM receipt_shopper_breadth").decode((String, Int64).self)
                return (
                    try connection.query("SELECT store_id, shopper_id, product_id, score FROM receipt_shopper_suggestions")
                        .decode((String, Int64, String, Double).self),
                    // Counted in groups of at most 100 profile products, as a store of diverse shoppers would be.
                    try ShopperProducts.neighbourhoods(of: shoppers.map { ($0.0, $0.1) }, groupProducts: 100, connection: connection).map {
                        ($0.store, $0.shopperID, $0.productID, $0.score)
                    },
                    try connection.query(PostgresQuery(unsafeSQL: Self.reference)).decode((String, Int64, String, Double).self)
                )
            }
            #expect(worker.count > 10_000, "a real neighbourhood: \(worker.count) suggestions")
            Self.expectSame(worker, as: definition)
            Self.expectSame(grouped, as: definition)
        }
    }

    /// The same shoppers of the same stores, each with as many suggestions and the same scores, and the same products
    /// but where the definition cut its list among products scored the same as the last kept (sums equal but added
    /// in another order may round apart there).
    static func expectSame(_ worker: [(String, Int64, String, Double)], as definition: [(String, Int64, String, Double)]) {
        func byShopper(_ rows: [(String, Int64, String, Double)]) -> [String: [String: Double]] {
            rows.reduce(into: [:]) { $0["\($1.0)/\($1.1)", default: [:]][$1.2] = $1.3 }
        }
        let (found, expected) = (byShopper(worker), byShopper(definition))
        #expect(Set(found.keys) == Set(expected.keys))
        var differing: [String] = []
        for (shopper, want) in expected {
            let got = found[shopper] ?? [:]
            let (wanted, gotten) = (want.values.sorted(), got.values.sorted())
            guard wanted.count == gotten.count, zip(wanted, gotten).allSatisfy({ abs($0 - $1) <= 1e-9 }) else {
                differing.append("\(shopper): \(gotten.count) scores for \(wanted.count), or other scores")
                continue
            }
            let cut = want.count == NextSaleTuning.candidatesPerKind ? wanted.first : nil
            for (product, score) in want where got[product] == nil && cut.map({ abs(score - $0) > 1e-9 }) ?? true {
                differing.append("\(shopper) \(product) (\(score)) missing")
            }
            for (product, score) in got where want[product].map({ abs($0 - score) > 1e-9 }) ?? false {
                differing.append("\(shopper) \(product): \(score) for \(want[product] ?? .nan)")
            }
        }
        #expect(differing.isEmpty, "\(differing.count) differ: \(differing.prefix(10))")
    }
}
