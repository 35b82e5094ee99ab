import Foundation
import Shared

/// A backtest of the next-sale model on one store's history, through PostgreSQL and the workers' own code: what
/// `ReceiptWorker evaluate` prints and records, and what `rapport-bench nextsale` prints for a purchase history.
///
/// Each customer's last `holdoutOrders` orders are held out one at a time: at position k (k = N … 1) every customer's
/// orders but their last k are the training orders, and each customer with one of them has their k-th last order
/// tested — ranked as `ReceiptWorker recommend` ranks (``NextSaleRanker``) as of that order's time, 10 products never
/// bought, scored on the held-out products new to them. The training orders of position N are recorded and the model
/// rebuilt as `ReceiptWorker rebuild` does; each next position adds every customer's next order through the path a
/// batch takes (the succession counts' change folded, the shoppers' products changed), so the backtest exercises
/// both. Two baselines minus what the customer bought: the products in the most training orders (purchase-count
/// popularity) and those bought by the most customers (distinct-buyer popularity). Intervals: 95 % percentile
/// bootstrap over customers (1,000 resamples, a fixed seed), a customer's held-out orders resampled together.
public struct NextSaleBacktest: Sendable {
    /// A rate or a ratio with its 95 % interval.
    public struct Estimate: Sendable {
        public var value = 0.0, low = 0.0, high = 0.0
    }

    /// Hit rate@10 (at least one held-out product found) and recall@10 (the share found).
    public struct Scores: Sendable {
        public var hit = Estimate()
        public var recall = Estimate()
    }

    public var holdoutOrders = 0
    public var customers = 0, orderCount = 0, products = 0
    /// Held-out orders with a product new to the customer.
    public var tested = 0
    public var model = Scores()
    /// Purchase-count popularity: the products in the most training orders.
    public var byOrders = Scores()
    /// Distinct-buyer popularity: the products bought by the most customers.
    public var byBuyers = Scores()
    /// The model's hit rate ÷ each baseline's, and ÷ the better of the two (``lead``), with intervals.
    public var overOrders = Scores()
    public var overBuyers = Scores()
    public var lead = Estimate()
    /// The model's list for each customer at the last position (their last order held out), best first: what
    /// `recommend` prints once the backtest is over.
    public var rankings: [Int64: [String]] = [:]

    /// The fewest held-out orders (with a product new to the customer) a decision is made on: fewer, and the hit rates'
    /// intervals are wider than any lead the model could show (±5 points at 100).
    public static let minimumTested = 100

    /// Whether there are enough held-out orders to decide (``minimumTested``).
    public var decides: Bool { tested >= Self.minimumTested }

    /// What the store is served: the model only when its hit rate beats both baselines' on the store's own history.
    public var serves: StoreModelChoice.Serves { lead.value > 1 ? .model : .popularity }

    /// The table `ReceiptWorker evaluate` and `rapport-bench nextsale` print: each rate with its interval, the
    /// model's over each baseline.
    public var report: [String] {
        func cell(_ estimate: Estimate, percent: Bool) -> String {
            percent
                ? String(format: "%5.2f %% [%5.2f, %5.2f]", 100 * estimate.value, 100 * estimate.low, 100 * estimate.high)
                : String(format: "%5.2f× [%4.2f, %4.2f]", estimate.value, estimate.low, estimate.high)
        }
        func row(_ name: String, _ scores: Scores, percent: Bool = true) -> String {
            "  " + name.padding(toLength: 34, withPad: " ", startingAt: 0)
                + cell(scores.hit, percent: percent).padding(toLength: 26, withPad: " ", startingAt: 0)
                + cell(scores.recall, percent: percent)
        }
        return [
            String(
                format:
                    "  %d customers, %d orders, %d products; the last %d orders of each customer held out one at a time: %d with a product new to the customer",
                customers, orderCount, products, holdoutOrders, tested),
            "  " + "".padding(toLength: 34, withPad: " ", startingAt: 0) + "hit@10 [95 % interval]".padding(toLength: 26, withPad: " ", startingAt: 0)
                + "recall@10 [95 % interval]",
            row("next-sale model", model), row("top sellers by orders", byOrders), row("top sellers by buyers", byBuyers),
            row("model ÷ top sellers by orders", overOrders, percent: false), row("model ÷ top sellers by buyers", overBuyers, percent: false),
        ]
    }

    /// One line for the decision log and `explain`.
    public var summary: String {
        String(
            format:
                "backtest of %d held-out orders (last %d per customer): model hit@10 %.1f %%, top sellers %.1f %% (by orders) and %.1f %% (by buyers); model ÷ better %.2f× [%.2f, %.2f]",
            tested, holdoutOrders, 100 * model.hit.value, 100 * byOrders.hit.value, 100 * byBuyers.hit.value, lead.value, lead.low, lead.high)
    }
}

public enum NextSaleEvaluation {
    /// The store `rapport-bench nextsale` writes its histories to.
    public static let store = "nextsale"
    /// Bootstrap resamples.
    static let resamples = 1_000

    /// `rapport-bench nextsale`: records `customers` (by name) in ``store`` (``load(_:store:connection:)``) and
    /// backtests it as `ReceiptWorker evaluate` does.
    /// - Returns: The backtest, its rankings by customer name.
    /// - Throws: ``PostgresError``.
    public static func evaluate(
        _ customers: [String: [PurchasedOrder]], holdoutOrders: Int = 1, limit: Int, connection: PostgresConnection
    ) throws -> (backtest: NextSaleBacktest, rankings: [String: [String]]) {
        let ids = try load(customers, store: store, connection: connection)
        let backtest = try backtest(store: store, holdoutOrders: holdoutOrders, limit: limit, connection: connection)
        let names = Dictionary(uniqueKeysWithValues: ids.map { ($1, $0) })
        return (backtest, Dictionary(uniqueKeysWithValues: backtest.rankings.compactMap { id, list in names[id].map { ($0, list) } }))
    }

    /// Records `customers`' completed orders in `store` as ReceiptWorker records them — a shared shopper per customer
    /// whose `user_id` is the customer's name, their orders and items by `COPY` — and rebuilds the store's model as
    /// `ReceiptWorker rebuild` does.
    /// - Returns: Each customer's shopper id.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public static func load(_ customers: [String: [PurchasedOrder]], store: String, connection: PostgresConnection) throws -> [String: Int64] {
        let names = customers.keys.sorted()
        let ids = try connection.transaction { () -> [String: Int64] in
            let allocated = try connection.query(
                "SELECT nextval(pg_get_serial_sequence('rapport_shoppers', 'shopper_id')) FROM generate_series(1, \(names.count))"
            ).decode(Int64.self)
            let ids = Dictionary(uniqueKeysWithValues: zip(names, allocated))
            try connection.copy(into: "rapport_shoppers", columns: ["store_id", "shopper_id"], rows: names.map { [store, ids[$0]] })
            try connection.copy(
                into: "rapport_identities", columns: ["store_id", "kind", "value", "shopper_id"], rows: names.map { [store, "user_id", $0, ids[$0]] })
            try write(
                store: store, Dictionary(uniqueKeysWithValues: names.compactMap { name in ids[name].map { ($0, customers[name] ?? []) } }),
                connection: connection)
            return ids
        }
        try connection.execute("ANALYZE")
        _ = try connection.transaction { try PurchaseModelStore.rebuild(store: store, connection: connection) }
        try suggestAll(store: store, connection: connection)
        return ids
    }

    /// `ReceiptWorker evaluate`: backtests `store` on its own completed orders (those of a shopper; an erased
    /// shopper's are no one's history) without touching what the workers read: the connection's session gets
    /// temporary tables of the same names, which its statements find before the workers' tables (PostgreSQL looks in
    /// the session's temporary schema first), so the backtest runs the very statements `recommend` and a batch run;
    /// they are dropped before it returns (and with the session, should it fail).
    /// - Throws: ``PostgresError``.
    public static func backtest(store: String, holdoutOrders: Int, limit: Int, connection: PostgresConnection) throws -> NextSaleBacktest {
        // Those of a shopper: an erased shopper's orders are no one's history.
        let customers = Dictionary(
            try PurchaseHistory.store(store, connection: connection).compactMap { customer in customer.shopperID.map { ($0, customer.orders) } },
            uniquingKeysWith: { first, _ in first })
        for table in shadowed {
            try connection.execute("CREATE TEMPORARY TABLE \(identifier: table) (LIKE \(identifier: table) INCLUDING ALL)")
        }
        func drop() throws { for table in shadowed { try connection.execute("DROP TABLE IF EXISTS pg_temp.\(identifier: table)") } }
        do {
            let backtest = try run(
                store: store,
                customers: customers, holdoutOrders: holdoutOrders, limit: limit, connection: connection)
            try drop()
            return backtest
        } catch {
            // A connection that outlives a failed backtest must not keep shadowing the workers' tables.
            _ = try? connection.execute("ROLLBACK")
            try? drop()
            throw error
        }
    }

    /// The tables a backtest writes and the ranking reads, shadowed by temporary ones in ``backtest(store:holdoutOrders:limit:connection:)``
    /// (`receipt_store_models` empty: the backtest ranks with the model whatever the store is served).
    static let shadowed = [
        "receipt_orders", "receipt_order_items", "receipt_product_stats", "receipt_transitions", "receipt_copurchases",
        "receipt_category_transitions", "receipt_daily_sales", "receipt_top_sellers", "receipt_model_changes", "receipt_model_change_sets",
        "receipt_shopper_products", "receipt_shopper_breadth", "receipt_shopper_suggestions", "receipt_store_models",
    ]

    /// One customer's results at every position, summed (bootstrapped together).
    struct Outcome {
        var cases = 0.0
        var model = (hit: 0.0, recall: 0.0), orders = (hit: 0.0, recall: 0.0), buyers = (hit: 0.0, recall: 0.0)

        static func score(_ listed: some Sequence<String>, _ relevant: Set<String>) -> (hit: Double, recall: Double) {
            let found = Double(Set(listed).intersection(relevant).count)
            return (found > 0 ? 1 : 0, found / Double(relevant.count))
        }
    }

    /// The backtest over `customers` (by shopper id) of `store`, whose tables the connection's statements find empty.
    static func run(
        store: String, customers: [Int64: [PurchasedOrder]], holdoutOrders: Int, limit: Int, connection: PostgresConnection
    ) throws -> NextSaleBacktest {
        let holdout = max(1, holdoutOrders)
        var result = NextSaleBacktest()
        result.holdoutOrders = holdout
        result.customers = customers.count
        let sequences = customers.mapValues { PurchasedOrder.sequence($0) }
        result.orderCount = sequences.values.reduce(0) { $0 + $1.count }
        result.products = Set(sequences.values.flatMap { $0.flatMap { $0.products.map(\.id) } }).count
        // Training counts for the baselines, kept as orders are added.
        var orderCounts: [String: Int] = [:]
        var buyerCounts: [String: Int] = [:]
        func count(_ order: PurchasedOrder, before history: ArraySlice<PurchasedOrder>) {
            let bought = Set(history.flatMap { $0.products.map(\.id) })
            for product in order.products {
                orderCounts[product.id, default: 0] += 1
                if !bought.contains(product.id) { buyerCounts[product.id, default: 0] += 1 }
            }
        }
        let initial = sequences.mapValues { $0.dropLast(holdout) }
        for history in initial.values { for (index, order) in history.enumerated() { count(order, before: history.prefix(index)) } }
        try write(store: store, initial.mapValues(Array.init), connection: connection)
        // No autovacuum analyzes a session's temporary tables: without statistics the planner reads them by sequence.
        let tables = shadowed.map { "\"\($0)\"" }.joined(separator: ", ")
        try connection.execute(PostgresQuery(unsafeSQL: "ANALYZE \(tables)"))
        _ = try connection.transaction { try PurchaseModelStore.rebuild(store: store, connection: connection) }
        try connection.execute(PostgresQuery(unsafeSQL: "ANALYZE \(tables)"))
        try suggestAll(store: store, connection: connection)
        var outcomes: [Int64: Outcome] = [:]
        for position in stride(from: holdout, through: 1, by: -1) {
            func ranked(_ counts: [String: Int]) -> [String] { counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map(\.key) }
            let (byOrders, byBuyers) = (ranked(orderCounts), ranked(buyerCounts))
            let tests = sequences.compactMap { shopper, sequence in
                sequence.count > position ? (shopper, sequence[..<(sequence.count - position)], sequence[sequence.count - position]) : nil
            }.sorted { ($0.2.placedAt, $0.0) < ($1.2.placedAt, $1.0) }
            // The top sellers of each day asked about are computed once, as a fold computes them on that day, and read
            // from `receipt_top_sellers` as `recommend` reads them.
            var refreshed: String?
            for (shopper, history, next) in tests {
                if refreshed != PurchaseCounts.day(next.placedAt) {
                    try PurchaseModelStore.refreshTopSellers(store: store, now: next.placedAt, connection: connection)
                    refreshed = PurchaseCounts.day(next.placedAt)
                }
                let listed = try NextSaleRanker.recommend(store: store, shopperID: shopper, asOf: next.placedAt, limit: limit, connection: connection)
                if position == 1 { result.rankings[shopper] = listed.map(\.productID) }
                let bought = Set(history.flatMap { $0.products.map(\.id) })
                let relevant = Set(next.products.map(\.id)).subtracting(bought)
                guard !relevant.isEmpty else { continue }
                result.tested += 1
                var outcome = outcomes[shopper] ?? Outcome()
                outcome.cases += 1
                func add(_ sum: inout (hit: Double, recall: Double), _ listed: some Sequence<String>) {
                    let score = Outcome.score(listed, relevant)
                    sum.hit += score.hit
                    sum.recall += score.recall
                }
                add(&outcome.model, listed.map(\.productID))
                add(&outcome.orders, byOrders.lazy.filter { !bought.contains($0) }.prefix(limit))
                add(&outcome.buyers, byBuyers.lazy.filter { !bought.contains($0) }.prefix(limit))
                outcomes[shopper] = outcome
            }
            guard position > 1 else { break }
            // The next position's training orders: every customer's k-th last order, added as a batch adds orders.
            var added: [Int64: [PurchasedOrder]] = [:]
            var change = PurchaseModelChange()
            for (shopper, sequence) in sequences where sequence.count >= position {
                let history = sequence[..<(sequence.count - position)]
                let order = sequence[sequence.count - position]
                count(order, before: history)
                added[shopper] = [order]
                change.add(store: store, shopperID: shopper, from: Array(history), to: Array(history) + [order])
            }
            try connection.transaction {
                try write(store: store, added, connection: connection)
                try change.record(connection: connection)
            }
            try connection.transaction { try PurchaseModelStore.foldAll(connection: connection) }
            try suggestAll(store: store, connection: connection)
        }
        result.model = estimate(outcomes, \.model)
        result.byOrders = estimate(outcomes, \.orders)
        result.byBuyers = estimate(outcomes, \.buyers)
        result.overOrders = ratio(outcomes, \.model, over: \.orders)
        result.overBuyers = ratio(outcomes, \.model, over: \.buyers)
        result.lead = ratio(outcomes, \.model, over: nil).hit
        return result
    }

    /// Records `customers`' orders as ReceiptWorker records them — completed, their items by line — by `COPY`. An
    /// order's id is the shopper's id, `/`, and its own.
    static func write(store: String, _ customers: [Int64: [PurchasedOrder]], connection: PostgresConnection) throws {
        var orders: [[(any PostgresBindable)?]] = []
        var items: [[(any PostgresBindable)?]] = []
        for (shopper, history) in customers.sorted(by: { $0.key < $1.key }) {
            for order in history {
                let id = "\(shopper)/\(order.orderID)"
                orders.append([store, id, "\(store)/\(shopper)", shopper, "EUR", "completed", order.placedAt])
                for (line, product) in order.products.enumerated() { items.append([store, id, line + 1, product.id, product.category, 1]) }
            }
        }
        try connection.copy(
            into: "receipt_orders", columns: ["store_id", "order_id", "shopper_key", "shopper_id", "currency", "status", "placed_at"], rows: orders)
        try connection.copy(into: "receipt_order_items", columns: ["store_id", "order_id", "line", "product_id", "category", "quantity"], rows: items)
    }

    /// The suggestions of every shopper of `store` whose products changed, as the compactor keeps them once it has
    /// caught up.
    public static func suggestAll(store: String, connection: PostgresConnection) throws {
        while try connection.transaction({ try ShopperProducts.suggest(store: store, limit: 1_000, refreshAfter: .zero, connection: connection) }) > 0 {}
    }

    typealias Sum = (hit: Double, recall: Double)

    /// Rates over every held-out order, with percentile intervals over customers resampled.
    static func estimate(_ outcomes: [Int64: Outcome], _ part: KeyPath<Outcome, Sum>) -> NextSaleBacktest.Scores {
        bootstrap(outcomes) { sample in
            let cases = sample.reduce(0) { $0 + $1.cases }
            let sum = sample.reduce((0.0, 0.0)) { ($0.0 + $1[keyPath: part].hit, $0.1 + $1[keyPath: part].recall) }
            return (sum.0 / max(cases, 1), sum.1 / max(cases, 1))
        }
    }

    /// The model's rates ÷ a baseline's (`nil`: the better baseline by hit rate, and by recall), with intervals.
    static func ratio(_ outcomes: [Int64: Outcome], _ part: KeyPath<Outcome, Sum>, over baseline: KeyPath<Outcome, Sum>?) -> NextSaleBacktest.Scores {
        bootstrap(outcomes) { sample in
            func sum(_ path: KeyPath<Outcome, Sum>) -> Sum { sample.reduce((0.0, 0.0)) { ($0.0 + $1[keyPath: path].hit, $0.1 + $1[keyPath: path].recall) } }
            let model = sum(part)
            let base: Sum
            if let baseline {
                base = sum(baseline)
            } else {
                let (orders, buyers) = (sum(\.orders), sum(\.buyers))
                base = (max(orders.hit, buyers.hit), max(orders.recall, buyers.recall))
            }
            return (model.hit / max(base.hit, 1e-9), model.recall / max(base.recall, 1e-9))
        }
    }

    /// `statistic` of every customer, and its 2.5th and 97.5th percentiles over ``resamples`` resamples of customers.
    static func bootstrap(_ outcomes: [Int64: Outcome], _ statistic: ([Outcome]) -> Sum) -> NextSaleBacktest.Scores {
        let all = outcomes.sorted { $0.key < $1.key }.map(\.value)
        let point = statistic(all)
        guard all.count > 1 else {
            return .init(
                hit: .init(value: point.hit, low: point.hit, high: point.hit), recall: .init(value: point.recall, low: point.recall, high: point.recall))
        }
        var generator = SplitMix(state: 2026)
        var hits: [Double] = []
        var recalls: [Double] = []
        var sample = [Outcome](repeating: Outcome(), count: all.count)
        for _ in 0..<resamples {
            for index in sample.indices { sample[index] = all[Int(generator.next() % UInt64(all.count))] }
            let value = statistic(sample)
            hits.append(value.hit)
            recalls.append(value.recall)
        }
        func interval(_ values: [Double], _ point: Double) -> NextSaleBacktest.Estimate {
            let sorted = values.sorted()
            return .init(value: point, low: sorted[Int(Double(sorted.count) * 0.025)], high: sorted[Int(Double(sorted.count) * 0.975) - 1])
        }
        return .init(hit: interval(hits, point.hit), recall: interval(recalls, point.recall))
    }
}
