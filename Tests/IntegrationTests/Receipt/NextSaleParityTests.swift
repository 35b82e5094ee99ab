import Foundation
import NextSale
import Shared
import Testing

@testable import ReceiptWorker

/// One path for the next-sale model's figures: `rapport-bench nextsale`'s evaluation (``NextSaleEvaluation``, which
/// records the training orders, rebuilds the model and ranks every customer) gives each customer the very list
/// `ReceiptWorker recommend` prints for them from the same database.
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
            let result = try await postgres.withConnection { try NextSaleEvaluation.evaluate(customers, limit: 10, connection: $0) }
            #expect(result.rankings.count == 30, "every customer has a held-out order")
            #expect(result.tested > 0 && result.model.hit > 0, "the model finds some held-out products")
            for (customer, ranking) in result.rankings.sorted(by: { $0.key < $1.key }) {
                #expect(!ranking.isEmpty, "\(customer) has a list")
                let recommend = try ChildProcess(
                    "ReceiptWorker", ["recommend", "--store", NextSaleEvaluation.store, "--user-id", customer, "--limit", "10"],
                    environment: ["DATABASE_URL": url])
                #expect(try await recommend.waitForExit() == 0, "\(recommend.stderr)")
                let answer = try #require(try JSONValue.parse(Array(recommend.stdout.utf8)[...]).objectValue)
                let listed = answer["products"]?.arrayValue?.compactMap { $0["product_id"]?.stringValue } ?? []
                #expect(listed == ranking, "\(customer): recommend \(listed), the benchmark \(ranking)")
                // Never what the customer bought before the held-out order.
                let bought = Set((customers[customer] ?? []).dropLast().flatMap { $0.products.map(\.id) })
                #expect(bought.isDisjoint(with: ranking), "\(customer) is never offered what they bought")
            }
        }
    }
}

extension Int {
    /// ⌊√self⌋: a uniform index squared-rooted favours large values, so P1 is the rarest and P6 the most popular.
    fileprivate var squareRootFloor: Int { Int(Double(self).squareRoot()) }
}
