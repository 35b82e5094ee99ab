import ArgumentParser
import Foundation
import Logging
import Shared

/// SurveyWorker end to end beside the pipeline's own figure: surveys/s (responses stored, shopper resolved, profile
/// derived again from every response, preferences, a `post_survey` recommendation from a next-sale model of the
/// customers' orders), and the time one re-scoring pass takes over a million customers.
struct SurveyBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "survey", abstract: "SurveyWorker surveys/s beside the pipeline's events/s; one churn re-scoring pass over N customers.")

    @Option(help: "Surveys in the backlog (two per customer; each customer has two orders).")
    var surveys = 40_000

    @Option(help: "Customers re-scored (orders: 1 to 4 each; 0: skip).")
    var customers = 1_000_000

    @OptionGroup var harnessOptions: HarnessOptions

    mutating func run() async throws {
        let logger = Logger.bench
        let (harness, echo) = try await harnessOptions.start("survey", detail: "\(surveys) surveys", events: surveys, logger: logger)
        let count = surveys
        let buyers = max(surveys / 2, 1)
        var recommended = 0
        let survey = try await harness.drain(
            "SurveyWorker", inputVariable: "SURVEY_EVENTS_TOPIC", extraEnvironment: ["SCHEDULER_ENABLED": "false", "CHURN_RESCORE_SECONDS": "0"],
            prepare: { database, _ in try await Self.seedCustomers(buyers, ordersEach: { _ in 2 }, database: database, rebuild: true, logger: logger) },
            backlog: { topic in (0..<count).map { Self.survey($0, customers: buyers, topic: topic) } },
            inspect: { database in
                let client = database.client(logger: logger)
                defer { client.close() }
                recommended = try await client.withConnection {
                    try $0.query("SELECT count(*) FROM rapport_contact_decisions WHERE template = 'recommend:post_survey' AND decision = 'sent'").first?
                        .decode(Int.self) ?? 0
                }
            })
        print(
            String(
                format: "  SurveyWorker (response, profile, prefs,   %8.0f surveys/s  %3.0f %% of pipeline   peak RSS %5.1f MB",
                survey.rate, 100 * survey.rate / echo.rate, survey.peak))
        print("                post_survey recommendation)   (\(recommended) recommendations sent)")
        fflush(nil)
        if customers > 0 { try await rescoring(logger: logger) }
        try await harness.close()
    }

    /// A survey of customer `index % customers`: interests, habits, an income band, channels, a free answer.
    static func survey(_ index: Int, customers: Int, topic: String) -> KafkaOutboundMessage {
        let customer = index % customers
        let at = CaptureBenchmark.trafficStart.addingTimeInterval(Double(index) * 0.5).rfc3339
        let channels = index % 3 == 0 ? #"["instagram","loyalty"]"# : #"["events"]"#
        let json =
            #"{"type":"track","event":"Survey Submitted","messageId":"s-\#(index)","timestamp":"\#(at)","userId":"c-\#(customer)","context":{"storeId":"bench"},"properties":{"survey_id":"onboarding-\#(index / customers)","answers":{"interests":["c-\#(index % 50)","c-\#((index + 7) % 50)"],"habits":{"brews":"daily","when":"morning"},"income_band":"50-75k","channels":\#(channels),"favourite":"the one with the blue label"}}}"#
        return KafkaOutboundMessage(topic: topic, key: Array("bench/c-\(customer)".utf8), value: Array(json.utf8))
    }

    /// Seeds `customers` shared shoppers (user id `c-N`, an address each) with `ordersEach(N)` orders of three items
    /// over the last two years, as ReceiptWorker records them; `rebuild` builds the next-sale model from them.
    static func seedCustomers(_ customers: Int, ordersEach: (Int) -> Int, database: BenchDatabase, rebuild: Bool, logger: Logger) async throws {
        for executable in ["ReceiptWorker", "SurveyWorker"] {
            try BenchWorker(executable, arguments: ["migrate"], environment: ["DATABASE_URL": database.url]).waitForSuccess()
        }
        let client = database.client(logger: logger)
        defer { client.close() }
        let perCustomer: PostgresQuery = ordersEach(0) == ordersEach(1) ? "\(ordersEach(0))::int" : "1 + c % 4"
        try await client.withConnection { connection in
            try connection.execute("INSERT INTO rapport_shoppers (store_id, shopper_id) SELECT 'bench', c FROM generate_series(1, \(customers)::int) c")
            try connection.execute("SELECT setval(pg_get_serial_sequence('rapport_shoppers', 'shopper_id'), \(customers)::int + 1, false)")
            try connection.execute(
                """
                INSERT INTO rapport_identities (store_id, kind, value, shopper_id)
                SELECT 'bench', k.kind, CASE k.kind WHEN 'user_id' THEN 'c-' || c ELSE 'c-' || c || '@example.com' END, c
                FROM generate_series(1, \(customers)::int) c, (VALUES ('user_id'), ('email')) AS k(kind)
                """)
            // Customer c's k-th order: every 20 to 80 days, the last one up to 400 days ago.
            try connection.execute(
                """
                INSERT INTO receipt_orders (store_id, order_id, shopper_key, shopper_id, currency, status, placed_at, message_id, subtotal, total, email)
                SELECT 'bench', 'o-' || c || '-' || k, 'bench/c-' || c, c, 'EUR', 'completed',
                       now() - ((c::bigint * 7919) % 400) * interval '1 day' - (k * (20 + (c * 31) % 60)) * interval '1 day', 'm-' || c || '-' || k,
                       3750, 2500 + (c % 5) * 1000, 'c-' || c || '@example.com'
                FROM generate_series(1, \(customers)::int) c, LATERAL generate_series(0, (\(perCustomer)) - 1) k
                """)
            if rebuild {
                try connection.execute(
                    """
                    INSERT INTO receipt_order_items (store_id, order_id, line, product_id, category, quantity, unit_price)
                    SELECT o.store_id, o.order_id, l, 'p-' || p, 'c-' || (p % 50), 1, 1250
                    FROM receipt_orders o, generate_series(1, 3) l,
                         LATERAL (SELECT floor(power(random(), 2) * 2000)::int + 0 * l + 0 * length(o.order_id) AS p) r
                    """)
            }
            try connection.execute("ANALYZE")
        }
        if rebuild {
            try BenchWorker("ReceiptWorker", arguments: ["rebuild", "--store", "bench"], environment: ["DATABASE_URL": database.url]).waitForSuccess()
        }
    }

    /// One `SurveyWorker rescore` pass over `customers` customers (1 to 4 orders each), twice: the first schedules the
    /// win-backs of every lapse found (a history's first pass), the second is the steady state.
    func rescoring(logger: Logger) async throws {
        let database = try await BenchDatabase(prefix: "rapport_bench_rescore", logger: logger)
        let seeding = ContinuousClock.now
        try await Self.seedCustomers(customers, ordersEach: { 1 + $0 % 4 }, database: database, rebuild: false, logger: logger)
        let seeded = (ContinuousClock.now - seeding).seconds
        var times: [Double] = []
        for _ in 0..<2 {
            let started = ContinuousClock.now
            try BenchWorker("SurveyWorker", arguments: ["rescore"], environment: ["DATABASE_URL": database.url, "KAFKA_GROUP_ID": "bench-survey"])
                .waitForSuccess()
            times.append((ContinuousClock.now - started).seconds)
        }
        let client = database.client(logger: logger)
        let (orders, steps) = try await client.withConnection { connection in
            (
                try connection.query("SELECT count(*) FROM receipt_orders").first?.decode(Int.self) ?? 0,
                try connection.query("SELECT count(*) FROM rapport_scheduled_steps WHERE template = 'win_back'").first?.decode(Int.self) ?? 0
            )
        }
        client.close()
        print(
            String(
                format:
                    "  re-scoring %d customers (%d orders, seeded in %.0f s): first pass %.1f s (%d win-backs scheduled), next pass %.1f s (%.0f customers/s)",
                customers, orders, seeded, times[0], steps, times[1], Double(customers) / times[1]))
        try await database.drop()
    }
}
