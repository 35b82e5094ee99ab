import ArgumentParser
import Foundation
import Logging
import NextSale
import Shared

/// ReceiptWorker end to end beside the pipeline's own figure: orders/s (three items each, the next-sale model kept
/// incrementally, receipts, post-purchase recommendations and journeys scheduled), the scheduler's steps/s, and the
/// latency of a shopper's next-sale list (what `ReceiptWorker recommend` computes) in a store of a million orders.
struct ReceiptBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "receipt", abstract: "ReceiptWorker orders/s beside the pipeline's events/s, scheduler steps/s, recommendation latency.")

    @Option(help: "Orders in the backlog (three items each, four orders per customer).")
    var orders = 40_000

    @Option(help: "Journey steps due at once for the scheduler.")
    var steps = 20_000

    @Option(help: "Orders stored for the recommendation latency (0: skip).")
    var modelOrders = 1_000_000

    @Option(help: "Shoppers whose list is timed.")
    var samples = 500

    @OptionGroup var harnessOptions: HarnessOptions

    mutating func run() async throws {
        let logger = Logger.bench
        let (harness, echo) = try await harnessOptions.start("receipt", detail: "\(orders) orders", events: orders, logger: logger)
        let count = orders
        var scheduled = 0
        let receipt = try await harness.drain(
            "ReceiptWorker", inputVariable: "CHECKOUT_EVENTS_TOPIC", extraEnvironment: ["SCHEDULER_ENABLED": "false"],
            backlog: { topic in (0..<count).map { Self.order($0, customers: max(count / 4, 1), topic: topic) } },
            // Until the model has every order: the fold's work is the orders' too. What the worker's compactor has not
            // folded when the last batch commits is folded here (as the compactor would, one chunk a transaction), so
            // the figure counts that work and not the wait for its next turn (MODEL_FOLD_INTERVAL_MS).
            settled: { client in
                try await client.withTransaction { connection in
                    _ = try PurchaseModelStore.fold(limit: PurchaseModelStore.foldChunk, connection: connection)
                    return try PurchaseModelStore.isFolded(connection: connection)
                }
            },
            inspect: { database in
                let client = database.client(logger: logger)
                defer { client.close() }
                scheduled = try await client.withConnection { try $0.query("SELECT count(*) FROM rapport_scheduled_steps").first?.decode(Int.self) ?? 0 }
            })
        print(
            String(
                format: "  ReceiptWorker (3 items, model, receipt,     %8.0f orders/s   %3.0f %% of pipeline   peak RSS %5.1f MB",
                receipt.rate, 100 * receipt.rate / echo.rate, receipt.peak))
        print("                 recommendation, journey)     (\(scheduled) journey steps scheduled)")
        fflush(nil)
        if steps > 0 {
            let rate = try await schedulerRate(steps: steps, harness: harness, logger: logger)
            print(String(format: "  scheduler (thank-you steps, policy, outbox, publish)   %8.0f steps/s", rate))
            fflush(nil)
        }
        if modelOrders > 0 {
            try await recommendLatency(orders: modelOrders, logger: logger)
        }
        try await harness.close()
    }

    /// An order of customer `index % customers`: three products, popular ones more often, in 50 categories.
    static func order(_ index: Int, customers: Int, at: Date? = nil, topic: String) -> KafkaOutboundMessage {
        var generator = SplitMix(state: UInt64(index) &* 7919)
        let customer = index % customers
        var products = Set<Int>()
        while products.count < 3 {
            let u = Double(generator.next() % 1_000_000) / 1_000_000
            products.insert(Int(u * u * 2000))
        }
        let items = products.sorted().map { #"{"product_id":"p-\#($0)","name":"Product \#($0)","category":"c-\#($0 % 50)","price":12.5,"quantity":1}"# }
        let at = (at ?? CaptureBenchmark.trafficStart.addingTimeInterval(Double(index) * 0.5)).rfc3339
        let json =
            #"{"type":"track","event":"Order Completed","messageId":"m-\#(index)","timestamp":"\#(at)","userId":"c-\#(customer)","context":{"storeId":"bench","traits":{"firstName":"Ana"}},"properties":{"order_id":"o-\#(index)","currency":"EUR","email":"c-\#(customer)@example.com","products":[\#(items.joined(separator: ","))]}}"#
        return KafkaOutboundMessage(topic: topic, key: Array("bench/c-\(customer)".utf8), value: Array(json.utf8))
    }

    /// Steps/s of a ReceiptWorker's scheduler over `steps` thank-you steps due at once, one consenting contact each,
    /// no caps and no quiet hours (the settings file says so): claim, policy, command, outbox, publish, delete.
    func schedulerRate(steps: Int, harness: BenchHarness, logger: Logger) async throws -> Double {
        let database = try await BenchDatabase(prefix: "rapport_bench_scheduler", logger: logger)
        let migrate = try BenchWorker("ReceiptWorker", arguments: ["migrate"], environment: ["DATABASE_URL": database.url])
        try migrate.waitForSuccess()
        let group = "bench-scheduler"
        let client = database.client(logger: logger)
        defer { client.close() }
        try await client.withConnection { connection in
            try connection.execute(
                """
                INSERT INTO rapport_contacts (store_id, email, transactional_ok, marketing_consent, consent_level)
                SELECT 'bench', 'c-' || n || '@example.com', true, true, 'single' FROM generate_series(1, \(steps)::int) n
                """)
            try connection.execute(
                """
                INSERT INTO rapport_scheduled_steps (store_id, group_id, journey, template, shopper_key, email, causation_id, order_id, data, due_at)
                SELECT 'bench', \(group), 'orientation', 'thank_you', 'bench/c-' || n, 'c-' || n || '@example.com', 'm-' || n, NULL,
                       '{"first_name": "Ana", "products": [{"product_id": "p-1", "name": "Tea"}]}', now() - interval '1 minute'
                FROM generate_series(1, \(steps)::int) n
                """)
        }
        let settings = FileManager.default.temporaryDirectory.appendingPathComponent("rapport-bench-settings-\(UInt32.random(in: 0...UInt32.max)).json")
        try Data(#"{"unknown_stores": "defaults", "defaults": {"pressure": [], "quiet_hours": null}}"#.utf8).write(to: settings)
        defer { try? FileManager.default.removeItem(at: settings) }
        try harness.cluster.createTopic("bench-scheduler-input", partitions: 1)
        var environment = harness.environment(database: database, inputVariable: "CHECKOUT_EVENTS_TOPIC", topic: "bench-scheduler-input", group: group)
        environment["STORE_SETTINGS_FILE"] = settings.path
        environment["SCHEDULER_INTERVAL_MS"] = "10"
        let worker = try BenchWorker("ReceiptWorker", environment: environment)
        defer { worker.stop() }
        let rate = try await worker.drainRate(total: steps) {
            try await client.withConnection {
                try $0.query("SELECT count(*) FROM rapport_scheduled_steps WHERE state <> 'pending'").first?.decode(Int.self) ?? 0
            }
        }
        worker.stop()
        client.close()
        try await database.drop()
        return rate
    }

    /// Seeds `orders` orders (three items, 250 thousand customers) and the model by `ReceiptWorker rebuild`, then
    /// times one shopper's list as `ReceiptWorker recommend` computes it (``NextSaleRanker``) for random customers.
    func recommendLatency(orders: Int, logger: Logger) async throws {
        let database = try await BenchDatabase(prefix: "rapport_bench_recommend", logger: logger)
        let migrate = try BenchWorker("ReceiptWorker", arguments: ["migrate"], environment: ["DATABASE_URL": database.url])
        try migrate.waitForSuccess()
        let client = database.client(logger: logger)
        let customers = max(orders / 4, 1)
        let seeding = ContinuousClock.now
        try await client.withConnection { connection in
            try connection.execute(
                """
                INSERT INTO receipt_orders (store_id, order_id, shopper_key, shopper_id, currency, status, placed_at, message_id, subtotal, total)
                SELECT 'bench', 'o-' || n, 'bench/c-' || (n % \(customers)::int), n % \(customers)::int, 'EUR', 'completed',
                       now() - (\(orders)::int - n) * interval '5 seconds', 'm-' || n, 3750, 3750
                FROM generate_series(1, \(orders)::int) n
                """)
            try connection.execute(
                """
                INSERT INTO receipt_order_items (store_id, order_id, line, product_id, category, quantity, unit_price)
                SELECT 'bench', 'o-' || n, l, 'p-' || p, 'c-' || (p % 50), 1, 1250
                FROM generate_series(1, \(orders)::int) n, generate_series(1, 3) l, LATERAL (SELECT floor(power(random(), 2) * 2000)::int + 0 * n + 0 * l AS p) r
                """)
            try connection.execute("ANALYZE")
        }
        let seeded = (ContinuousClock.now - seeding).seconds
        let rebuilding = ContinuousClock.now
        let rebuild = try BenchWorker("ReceiptWorker", arguments: ["rebuild", "--store", "bench"], environment: ["DATABASE_URL": database.url])
        try rebuild.waitForSuccess()
        let rebuilt = (ContinuousClock.now - rebuilding).seconds
        try await client.withConnection { _ = try $0.execute("ANALYZE") }
        // "Customers like you": the sampled shoppers' suggestions computed as the compactor computes them (about 5 ms
        // of PostgreSQL each: all 250,000 would take the compactor some twenty minutes), every other shopper's filled
        // with 60 rows, so that the table read has its full size.
        var generator = SplitMix(state: 7)
        let keys = (0..<samples).map { _ in Int64(generator.next() % UInt64(customers)) }
        let suggesting = ContinuousClock.now
        try await client.withConnection { connection in
            try connection.execute("UPDATE receipt_shopper_breadth SET suggested = changes WHERE shopper_id <> ALL(\(PostgresArray(keys))::bigint[])")
            try NextSaleEvaluation.suggestAll(store: "bench", connection: connection)
            try connection.execute(
                """
                INSERT INTO receipt_shopper_suggestions (store_id, shopper_id, product_id, score)
                SELECT 'bench', b.shopper_id, 'p-' || ((b.shopper_id * 7 + j * 31) % 2000), 1.0 / j
                FROM receipt_shopper_breadth b, generate_series(1, 60) j
                WHERE b.store_id = 'bench' AND b.shopper_id <> ALL(\(PostgresArray(keys))::bigint[])
                ON CONFLICT DO NOTHING
                """)
            try connection.execute("ANALYZE")
        }
        let suggested = (ContinuousClock.now - suggesting).seconds
        var latencies: [Double] = []
        for key in keys {
            let started = ContinuousClock.now
            let count = try await client.withConnection {
                try NextSaleRanker.recommend(store: "bench", shopperID: key, asOf: Date(), limit: 10, connection: $0).count
            }
            latencies.append((ContinuousClock.now - started).seconds * 1000)
            guard count > 0 else { throw BenchError("no recommendation for \(key)") }
        }
        latencies.sort()
        func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        print(
            String(
                format: "  recommend, %d stored orders (seeded in %.0f s, rebuilt in %.0f s, %d shoppers' suggestions in %.1f s): p50 %.1f ms, p99 %.1f ms",
                orders, seeded, rebuilt, samples, suggested, percentile(0.5), percentile(0.99)))
        client.close()
        try await database.drop()
    }
}
