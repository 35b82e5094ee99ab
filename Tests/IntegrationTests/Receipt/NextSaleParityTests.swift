import Foundation
import NextSale
import Shared
import Testing

@testable import ReceiptWorker

/// One path for the next-sale model's figures: `rapport-bench nextsale`'s evaluation — the backtest `ReceiptWorker
/// evaluate` runs (``NextSaleEvaluation``) — gives each customer the very list `ReceiptWorker recommend` prints for
/// them from the same training orders.
@Suite struct NextSaleParityTests {
    /// 30 customers over 12 products: A, C and E are each followed by B, D and F in the next order three times in
    /// five, under a popular noise of P1…P6. Orders every 8 days over the last month; the last one (held out by the
    /// evaluation) an hour before `now`, after every other — so that as of it the store's top sellers are those of now.
    static func plantedStore(now: Date) -> [String: [PurchasedOrder]] {
        var generator = SplitMix(state: 30)
        let successor = ["A": "B", "C": "D", "E": "F"]
        func category(_ product: String) -> String { product.hasPrefix("P") ? "staples" : successor[product] == nil ? "refills" : "starters" }
        var customers: [String: [PurchasedOrder]] = [:]
        for customer in 0..<30 {
            let count = 3 + customer % 3
            var previous: [String] = []
            var orders: [PurchasedOrder] = []
            for index in 0..<count {
                var basket = Set<String>()
                for product in previous { if let next = successor[product], generator.next() % 5 < 3 { basket.insert(next) } }
                if generator.next() % 2 == 0 { basket.insert(["A", "C", "E"][Int(generator.next() % 3)]) }
                while basket.count < 2 { basket.insert("P\(1 + Int(generator.next() % 36).squareRootFloor)") }
                let placedAt =
                    index == count - 1 ? now.addingTimeInterval(-3600) : now.addingTimeInterval(-Double(30 - 8 * (count - 2 - index)) * 86_400 - 86_400)
                orders.append(
                    PurchasedOrder(orderID: "o\(index)", placedAt: placedAt, products: basket.sorted().map { .init(id: $0, category: category($0)) }))
                previous = basket.sorted()
            }
            customers["shopper-\(customer)"] = orders
        }
        return customers
    }

    @Test func theBenchmarkRanksEveryCustomerAsRecommendDoes() async throws {
        let customers = Self.plantedStore(now: Date())
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { postgres.close() }
            try await WorkerApp.migrate(descriptor: ReceiptWorker.descriptor, postgres: postgres, logger: TestEnvironment.logger, timeout: .seconds(30))
            // The benchmark's path: the whole history recorded, then backtested as `ReceiptWorker evaluate` does
            // (its last order held out, in the session's temporary tables).
            let (backtest, rankings) = try await postgres.withConnection {
                try NextSaleEvaluation.evaluate(customers, holdoutOrders: 1, limit: 10, connection: $0)
            }
            #expect(rankings.count == 30, "every customer has a held-out order")
            #expect(backtest.tested > 0 && backtest.model.hit.value > 0, "the model finds some held-out products")
            // The same training orders in a store of their own, ranked by `recommend` (each last order an hour ago:
            // the top sellers' 90 days end today for both).
            try await postgres.withConnection {
                _ = try NextSaleEvaluation.load(customers.mapValues { Array($0.dropLast()) }, store: "trained", connection: $0)
            }
            for (customer, ranking) in rankings.sorted(by: { $0.key < $1.key }) {
                #expect(!ranking.isEmpty, "\(customer) has a list")
                let recommend = try ChildProcess(
                    "ReceiptWorker", ["recommend", "--store", "trained", "--user-id", customer, "--limit", "10"], environment: ["DATABASE_URL": url])
                #expect(try await recommend.waitForExit() == 0, "\(recommend.stderr)")
                let answer = try #require(try JSONValue.parse(Array(recommend.stdout.utf8)[...]).objectValue)
                let listed = answer["products"]?.arrayValue?.compactMap { $0["product_id"]?.stringValue } ?? []
                #expect(listed == ranking, "\(customer): recommend \(listed), the benchmark \(ranking)")
                // Never what the customer bought before the held-out order.
                let bought = Set((customers[customer] ?? []).dropLast().flatMap { $0.products.map(\.id) })
                #expect(bought.isDisjoint(with: ranking), "\(customer) is never offered what they bought")
            }
            // The backtest left the workers' tables as they were: the store's orders all there, nothing decided.
            let orders = try await postgres.withConnection {
                try $0.query("SELECT count(*) FROM receipt_orders WHERE store_id = \(NextSaleEvaluation.store)").first?.decode(Int.self)
            }
            #expect(orders == customers.values.reduce(0) { $0 + $1.count })
        }
    }
}

extension Int {
    /// ⌊√self⌋: a uniform index squared-rooted favours large values, so P1 is the rarest and P6 the most popular.
    fileprivate var squareRootFloor: Int { Int(Double(self).squareRoot()) }
}
