import ArgumentParser
import Foundation
import Logging
import NextSale
import Shared

/// `rapport-bench nextsale`: how well the next-sale model predicts what a customer buys next, against plain
/// popularity, through PostgreSQL: on a fresh database, migrated by `ReceiptWorker migrate`, the backtest that
/// `ReceiptWorker evaluate` runs on a store (``NextSaleEvaluation``) — each customer's last orders held out one at a
/// time, every list read as `ReceiptWorker recommend` reads it, as of the held-out order's time.
struct NextSaleBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nextsale",
        abstract: "Hit rate@10 and recall@10 of the next-sale model and of popularity on purchase histories (CSV: shopper, order, product[, category]).")

    @Argument(help: "A CSV file: shopper, order number or time (RFC 3339 or yyyy-MM-dd…), product[, category]; a header line is skipped.")
    var file: String?

    @Flag(help: "Instead of a file: planted histories (successions A → B under popular noise), to see the model find them.")
    var planted = false

    @Option(help: "How many products are recommended.")
    var limit = 10

    @Option(help: "How many of each customer's last orders are held out, one at a time.")
    var holdoutOrders = 5

    func validate() throws {
        guard (file != nil) != planted else { throw ValidationError("give a CSV file or --planted") }
    }

    func run() async throws {
        let (customers, source) = try planted ? (Self.plantedHistories(), "planted histories") : (Self.read(file ?? ""), file ?? "")
        let logger = Logger.bench
        let database = try await BenchDatabase(prefix: "rapport_bench_nextsale", logger: logger)
        try BenchWorker("ReceiptWorker", arguments: ["migrate"], environment: ["DATABASE_URL": database.url]).waitForSuccess()
        let client = database.client(logger: logger)
        let started = ContinuousClock.now
        let (limit, holdout) = (self.limit, holdoutOrders)
        let backtest = try await client.withConnection {
            try NextSaleEvaluation.evaluate(customers, holdoutOrders: holdout, limit: limit, connection: $0).backtest
        }
        let seconds = (ContinuousClock.now - started).seconds
        client.close()
        try await database.drop()
        print("rapport-bench nextsale — \(source)")
        print(
            String(format: "  through PostgreSQL (recorded, rebuilt, orders added as batches add them, each list as `recommend` reads it) in %.0f s", seconds))
        for line in backtest.report { print(line) }
    }

    /// Reads `shopper, order, product[, category]` lines: an order is the shopper's lines with one order value; orders
    /// are placed in the order of their times (RFC 3339 or a date), else of their numbers, else of their text.
    static func read(_ path: String) throws -> [String: [PurchasedOrder]] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        let parser = ISO8601DateFormatter()
        let dayParser = DateFormatter()
        dayParser.locale = Locale(identifier: "en_US_POSIX")
        dayParser.timeZone = .gmt
        dayParser.dateFormat = "yyyy-MM-dd"
        func time(_ key: String) -> Date? {
            parser.date(from: key) ?? dayParser.date(from: String(key.prefix(10))) ?? Double(key).map { Date(timeIntervalSince1970: $0 * 86_400) }
        }
        var lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).map {
            $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        }
        // A header: a first line whose order is no time or number where the next line's is.
        if lines.count > 1, lines[0].count >= 3, lines[1].count >= 3, time(lines[0][1]) == nil, time(lines[1][1]) != nil { lines.removeFirst() }
        var orders: [String: [String: [PurchasedOrder.Product]]] = [:]
        for fields in lines {
            guard fields.count >= 3, !fields[0].isEmpty, !fields[2].isEmpty else { continue }
            let category = fields.count > 3 && !fields[3].isEmpty ? fields[3] : nil
            orders[fields[0], default: [:]][fields[1], default: []].append(.init(id: fields[2], category: category))
        }
        return orders.mapValues { byOrder in
            byOrder.map { key, products in PurchasedOrder(orderID: key, placedAt: time(key) ?? Date(timeIntervalSince1970: 0), products: products) }
        }
    }

    /// 4,000 customers over 600 products in 20 categories: popularity is Zipf-like, and some products have a planted
    /// successor (B after A) that a customer who bought A buys in their next order two times in five. Each customer
    /// starts on a day of one year and orders every 30 days, as a store's customers do (all starting on one day, the
    /// top sellers' 90 days held only their third to sixth orders).
    static func plantedHistories() -> [String: [PurchasedOrder]] {
        var generator = SplitMix(state: 42)
        let products = (0..<600).map { "p\($0)" }
        func category(_ product: Int) -> String { "c\(product % 20)" }
        func popular() -> Int {
            // Zipf-like: the square of a uniform number favours small indexes.
            let u = Double(generator.next() % 1_000_000) / 1_000_000
            return Int(u * u * Double(products.count))
        }
        let successor = Dictionary(uniqueKeysWithValues: (0..<200).map { ($0 * 3, ($0 * 3 + 301) % products.count) })
        var customers: [String: [PurchasedOrder]] = [:]
        for customer in 0..<4000 {
            var orders: [PurchasedOrder] = []
            var previous: [Int] = []
            let start = Double(generator.next() % 365)
            for index in 0..<(2 + Int(generator.next() % 4)) {
                var basket = Set<Int>()
                for product in previous { if let next = successor[product], generator.next() % 5 < 2 { basket.insert(next) } }
                while basket.count < 1 + Int(generator.next() % 3) { basket.insert(popular()) }
                let order = PurchasedOrder(
                    orderID: "\(customer)-\(index)", placedAt: Date(timeIntervalSince1970: (start + Double(index) * 30) * 86_400),
                    products: basket.sorted().map { .init(id: products[$0], category: category($0)) })
                orders.append(order)
                previous = basket.sorted()
            }
            customers["customer-\(customer)"] = orders
        }
        return customers
    }
}

extension String {
    /// Right-aligned in `width` columns.
    fileprivate func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
