import Foundation
import Shared

/// How well the next-sale model predicts what a customer buys next, against plain popularity, through PostgreSQL:
/// what `rapport-bench nextsale` prints. Each customer with two orders or more has their last order held out; every
/// other order is written to ReceiptWorker's tables as it records them (``load(_:connection:)``), the model rebuilt
/// from them as `ReceiptWorker rebuild` does, and each such customer's list read as `ReceiptWorker recommend` reads it
/// (``NextSaleRanker``) as of their held-out order's time — 10 products, never one they bought. A hit is a held-out
/// product new to the customer. Two baselines: the top sellers of every training order (the popularity), and
/// those of the 90 days before the held-out order (the model's own prior, then every order's).
public enum NextSaleEvaluation {
    /// The store the orders are written to.
    public static let store = "nextsale"

    /// Hit rate and recall over the held-out orders.
    public struct Score: Sendable {
        public var hit = 0.0
        public var recall = 0.0

        /// Counts one held-out order: a hit when any of `recommended` is `relevant`, and the share of `relevant` found.
        mutating func add(_ recommended: some Sequence<String>, _ relevant: Set<String>) {
            let found = Double(Set(recommended).intersection(relevant).count)
            hit += found > 0 ? 1 : 0
            recall += found / Double(relevant.count)
        }

        /// The sums as rates over `count` held-out orders.
        func averaged(over count: Double) -> Score { Score(hit: hit / count, recall: recall / count) }
    }

    public struct Result: Sendable {
        public var customers = 0, orders = 0, products = 0, tested = 0
        public var model = Score()
        public var popular = Score()
        public var recent = Score()
        /// The model's list for each customer with a held-out order (scored or not), as `recommend` would give it.
        public var rankings: [String: [String]] = [:]
    }

    /// Holds out each customer's last order, writes the rest into the database of `connection` (ReceiptWorker's
    /// tables, migrated and empty) and scores the model and both baselines on the held-out orders.
    /// - Throws: ``PostgresError``.
    public static func evaluate(_ customers: [String: [PurchasedOrder]], limit: Int, connection: PostgresConnection) throws -> Result {
        var result = Result()
        var training: [String: [PurchasedOrder]] = [:]
        var counts = PurchaseCounts()
        var tests: [(customer: String, history: [PurchasedOrder], next: PurchasedOrder)] = []
        var products = Set<String>()
        for (customer, orders) in customers.sorted(by: { $0.key < $1.key }) {
            let sequence = PurchasedOrder.sequence(orders)
            result.orders += sequence.count
            for order in sequence { for product in order.products { products.insert(product.id) } }
            let history = sequence.count >= 2 ? Array(sequence.dropLast()) : sequence
            if sequence.count >= 2, let last = sequence.last { tests.append((customer, history, last)) }
            training[customer] = history
            counts.add(PurchaseCounts(customer: history))
        }
        result.customers = customers.count
        result.products = products.count
        let shoppers = try load(training, connection: connection)
        func ranked(_ counts: [String: Int]) -> [String] { counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map(\.key) }
        let popular = ranked(counts.orders)
        // The 90 days' top sellers of each day asked about.
        var recentByDay: [String: [String]] = [:]
        var model = Score()
        var popularity = Score()
        var recency = Score()
        // By time: the top sellers of each day are computed once, as a fold computes them on that day, and read from
        // `receipt_top_sellers` as `recommend` reads them (else each list would sum the 90 days' sales again).
        var refreshed: String?
        for (customer, history, next) in tests.sorted(by: { ($0.next.placedAt, $0.customer) < ($1.next.placedAt, $1.customer) }) {
            guard let shopper = shoppers[customer] else { continue }
            if refreshed != PurchaseCounts.day(next.placedAt) {
                try PurchaseModelStore.refreshTopSellers(store: store, now: next.placedAt, connection: connection)
                refreshed = PurchaseCounts.day(next.placedAt)
            }
            let listed = try NextSaleRanker.recommend(store: store, shopperID: shopper, asOf: next.placedAt, limit: limit, connection: connection)
            result.rankings[customer] = listed.map(\.productID)
            let bought = Set(history.flatMap { $0.products.map(\.id) })
            let relevant = Set(next.products.map(\.id)).subtracting(bought)
            guard !relevant.isEmpty else { continue }
            result.tested += 1
            let day = PurchaseCounts.day(next.placedAt)
            if recentByDay[day] == nil {
                let lately = counts.sales(within: NextSaleTuning.popularWindow, endingAt: next.placedAt)
                recentByDay[day] = ranked(lately) + popular.filter { lately[$0] == nil }
            }
            model.add(listed.map(\.productID), relevant)
            popularity.add(popular.lazy.filter { !bought.contains($0) }.prefix(limit), relevant)
            recency.add((recentByDay[day] ?? []).lazy.filter { !bought.contains($0) }.prefix(limit), relevant)
        }
        let tested = Double(max(result.tested, 1))
        result.model = model.averaged(over: tested)
        result.popular = popularity.averaged(over: tested)
        result.recent = recency.averaged(over: tested)
        return result
    }

    /// Writes `customers`' orders into ``store`` as ReceiptWorker records them — a shared shopper per customer, whose
    /// `userId` is the customer's name, their completed orders and items, by `COPY` — and rebuilds its model as
    /// `ReceiptWorker rebuild` does (``PurchaseModelStore/rebuild(store:connection:)``). An order's id is the
    /// customer's name, `/`, and its own.
    /// - Returns: Each customer's shopper id.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public static func load(_ customers: [String: [PurchasedOrder]], connection: PostgresConnection) throws -> [String: Int64] {
        let names = customers.keys.sorted()
        let shoppers = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, Int64($0 + 1)) })
        try connection.transaction {
            try connection.copy(into: "rapport_shoppers", columns: ["store_id", "shopper_id"], rows: names.map { [store, shoppers[$0]] })
            try connection.execute("SELECT setval(pg_get_serial_sequence('rapport_shoppers', 'shopper_id'), \(Int64(names.count + 1)), false)")
            try connection.copy(
                into: "rapport_identities", columns: ["store_id", "kind", "value", "shopper_id"], rows: names.map { [store, "user_id", $0, shoppers[$0]] })
            var orders: [[(any PostgresBindable)?]] = []
            var items: [[(any PostgresBindable)?]] = []
            for name in names {
                for order in customers[name] ?? [] {
                    let id = "\(name)/\(order.orderID)"
                    orders.append([store, id, "\(store)/\(name)", shoppers[name], "EUR", "completed", order.placedAt, name])
                    for (line, product) in order.products.enumerated() { items.append([store, id, line + 1, product.id, product.category, 1]) }
                }
            }
            try connection.copy(
                into: "receipt_orders", columns: ["store_id", "order_id", "shopper_key", "shopper_id", "currency", "status", "placed_at", "user_id"],
                rows: orders)
            try connection.copy(into: "receipt_order_items", columns: ["store_id", "order_id", "line", "product_id", "category", "quantity"], rows: items)
        }
        try connection.execute("ANALYZE")
        _ = try connection.transaction { try PurchaseModelStore.rebuild(store: store, connection: connection) }
        return shoppers
    }
}
