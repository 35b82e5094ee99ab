import Churn
import Foundation
import Logging
import Metrics
import Shared
import Synchronization

/// Scores every customer's churn risk again every `interval`, because risk grows while nothing happens: a pass reads
/// each store's orders (ReceiptWorker's, in the same database) in pages of `chunk` customers, stores each score
/// (`survey_churn`) and, where the store wants win-backs, schedules one `win_back` step per lapse — due at the moment
/// the customer crossed the store's band while overdue — and cancels the pending win-back of a customer who ordered
/// again (`ordered_again`: the lapse is over). One replica scores at a time (an advisory lock); the others skip.
///
/// Metrics: `rapport_churn_risk{store}` (a histogram of every score of every pass), `rapport_churn_customers{store,band}`
/// (the last pass), `rapport_churn_pass_seconds`.
final class ChurnScorer: PeriodicJob {
    private let postgres: PostgresClient
    private let stores: StoreDirectory
    private let groupID: String
    let interval: Duration
    private let chunk: Int
    private let clock: @Sendable () -> Date
    private let logger: Logger
    /// Whether the missing orders were said already (once a process).
    private let warnedMissing = Mutex(false)

    var name: String { "churn_rescore" }
    var backoff: Backoff { Backoff(base: .milliseconds(500), cap: .seconds(30)) }
    var failureMessage: String { "re-scoring churn risk failed; retrying with backoff" }

    /// The journey and template of a win-back step.
    static let journey = "win_back"
    /// The advisory lock that makes one pass at a time.
    static let lock: Int64 = 0x7261_7070_6368_726E  // "rappchrn"

    init(
        postgres: PostgresClient, stores: StoreDirectory, groupID: String, interval: Duration, chunk: Int = 5_000,
        clock: @escaping @Sendable () -> Date = { Date() },
        logger: Logger
    ) {
        self.postgres = postgres
        self.stores = stores
        self.groupID = groupID
        self.interval = interval
        self.chunk = chunk
        self.clock = clock
        self.logger = logger
    }

    func round() async throws -> PeriodicRound {
        if try await pass() == nil,
            !warnedMissing.withLock({ warned in
                defer { warned = true }
                return warned
            })
        {
            logger.warning("churn risk needs ReceiptWorker's orders (receipt_orders) in this database; nothing to score yet")
        }
        return .done
    }

    /// One pass over every store, as of the clock's now.
    /// - Returns: How many customers were scored; `nil` when there are no orders to read (no ReceiptWorker tables), or
    ///   another replica holds the pass.
    @discardableResult
    func pass() async throws -> Int? {
        let (stores, groupID, chunk, now) = (self.stores, self.groupID, self.chunk, clock())
        let started = ContinuousClock.now
        let result: (Int, [String: [RiskBand: Int]])? = try await postgres.withConnection { connection in
            guard try ChurnStore.ordersAvailable(connection: connection) else { return nil }
            guard try connection.query("SELECT pg_try_advisory_lock(\(Self.lock))").first?.decode(Bool.self) ?? false else { return nil }
            defer { _ = try? connection.query("SELECT pg_advisory_unlock(\(Self.lock))") }
            var total = 0
            var bands: [String: [RiskBand: Int]] = [:]
            for store in try ChurnStore.stores(connection: connection) {
                let settings = stores.settings(for: store)
                let baseline = try ChurnStore.baseline(store: store, asOf: now, connection: connection)
                let histogram = Recorder(label: "rapport_churn_risk", dimensions: [("store", stores.metricLabel(for: store))], aggregate: true)
                try ChurnStore.forEachPage(store: store, asOf: now, limit: chunk, connection: connection) { customers in
                    let risks = try connection.transaction {
                        try Self.score(customers, store: store, baseline: baseline, settings: settings, group: groupID, now: now, connection: connection)
                    }
                    for risk in risks {
                        histogram.record(risk.risk)
                        bands[store, default: [:]][risk.band, default: 0] += 1
                    }
                    total += customers.count
                }
            }
            return (total, bands)
        }
        guard let (total, bands) = result else { return nil }
        // Stores the settings file does not name are summed under `other`.
        var labelled: [String: [RiskBand: Int]] = [:]
        for (store, counts) in bands { labelled[self.stores.metricLabel(for: store), default: [:]].merge(counts, uniquingKeysWith: +) }
        for (store, counts) in labelled {
            for band in RiskBand.allCases {
                Gauge(label: "rapport_churn_customers", dimensions: [("store", store), ("band", band.rawValue)]).record(counts[band] ?? 0)
            }
        }
        let seconds = (ContinuousClock.now - started).seconds
        Gauge(label: "rapport_churn_pass_seconds").record(seconds)
        logger.info("churn risk re-scored", metadata: ["customers": "\(total)", "seconds": "\(String(format: "%.2f", seconds))"])
        return total
    }

    /// Scores one page of a store's customers, stores the scores and moves their lapses on, inside the caller's
    /// transaction.
    static func score(
        _ customers: [ChurnStore.Customer], store: String, baseline: StoreBaseline, settings: StoreSettings, group: String, now: Date,
        connection: PostgresConnection
    ) throws -> [ChurnRisk] {
        let ids = customers.map(\.shopperID)
        var lapsed: [Int64: Date] = [:]  // shopper → the last order their scheduled win-back follows
        for (shopper, after) in try connection.query(
            "SELECT shopper_id, win_back_after FROM survey_churn WHERE store_id = \(store) AND shopper_id = ANY(\(PostgresArray(ids))::bigint[]) AND win_back_after IS NOT NULL"
        ).decode((Int64, Date).self) {
            lapsed[shopper] = after
        }
        let risks = customers.map { ChurnRisk($0.summary, baseline: baseline, asOf: now) }
        var ended: [Int64] = []
        var starting: [(customer: ChurnStore.Customer, risk: ChurnRisk, at: Date)] = []
        for (customer, risk) in zip(customers, risks) {
            if let after = lapsed[customer.shopperID], customer.summary.lastOrderAt > after {
                ended.append(customer.shopperID)
                lapsed[customer.shopperID] = nil
            }
            guard let rule = settings.winBack, lapsed[customer.shopperID] == nil, risk.overdue >= 1, risk.band >= rule.band,
                let at = ChurnRisk.lapse(of: customer.summary, baseline: baseline, band: rule.band), at <= now
            else { continue }
            starting.append((customer, risk, at))
            lapsed[customer.shopperID] = customer.summary.lastOrderAt
        }
        if !ended.isEmpty {
            try StepStore.cancel(
                where: "store_id = \(store) AND shopper_id = ANY(\(PostgresArray(ended))::bigint[])", templates: [EmailTemplate.winBack.name],
                reason: "ordered_again", connection: connection)
        }
        if !starting.isEmpty {
            let known = try ShopperResolver.known(starting.map { (store, $0.customer.shopperID) }, connection: connection)
            try StepStore.schedule(
                starting.map { entry in
                    let shopper = entry.customer.shopperID
                    let identities = known[shopper] ?? ShopperResolver.Known()
                    return ScheduledStep(
                        storeID: store, journey: journey, template: EmailTemplate.winBack.name, shopperKey: identities.shopperKey(store: store),
                        shopperID: shopper,
                        email: identities.email, causationID: causation(shopper: shopper, lastOrderAt: entry.customer.summary.lastOrderAt), orderID: nil,
                        data: [
                            "last_order_at": .string(entry.customer.summary.lastOrderAt.rfc3339), "orders": .number(Double(entry.customer.summary.orders)),
                            "band": .string(entry.risk.band.rawValue),
                        ],
                        dueAt: entry.at)
                }, group: group, connection: connection)
        }
        try connection.execute(
            """
            INSERT INTO survey_churn AS c (store_id, shopper_id, orders, first_order_at, last_order_at, expected_gap_days, overdue, risk, band, scored_at,
                                           win_back_after)
            SELECT \(store), u.* FROM unnest(
                \(PostgresArray(ids))::bigint[], \(PostgresArray(customers.map(\.summary.orders)))::int[],
                \(PostgresArray(customers.map(\.summary.firstOrderAt)))::timestamptz[], \(PostgresArray(customers.map(\.summary.lastOrderAt)))::timestamptz[],
                \(PostgresArray(risks.map(\.expectedGapDays)))::float8[], \(PostgresArray(risks.map(\.overdue)))::float8[], \(PostgresArray(risks.map(\.risk)))::float8[],
                \(PostgresArray(risks.map(\.band.rawValue)))::text[], \(PostgresArray(customers.map { _ in now }))::timestamptz[],
                \(PostgresArray(ids.map { lapsed[$0] }))::timestamptz[])
                 AS u(shopper_id, orders, first_order_at, last_order_at, expected_gap_days, overdue, risk, band, scored_at, win_back_after)
            ON CONFLICT (store_id, shopper_id) DO UPDATE
            SET orders = EXCLUDED.orders, first_order_at = EXCLUDED.first_order_at, last_order_at = EXCLUDED.last_order_at,
                expected_gap_days = EXCLUDED.expected_gap_days, overdue = EXCLUDED.overdue, risk = EXCLUDED.risk, band = EXCLUDED.band,
                scored_at = EXCLUDED.scored_at, win_back_after = EXCLUDED.win_back_after
            """)
        return risks
    }

    /// A lapse's win-back is caused by the shopper's silence since their last order: one step per shopper and last
    /// order, whatever the passes and replicas.
    static func causation(shopper: Int64, lastOrderAt: Date) -> String {
        "win_back:\(shopper):\(Int64((lastOrderAt.timeIntervalSince1970 * 1000).rounded()))"
    }
}
