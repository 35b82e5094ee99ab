import Foundation
import NextSale
import Shared
import Testing

@testable import ReceiptWorker

/// `ReceiptWorker evaluate`: a store's backtest decides what it is served — its top sellers while the model does not
/// beat them on its own history, the model once it does — recorded, shown by `recommend` and `explain`.
@Suite struct NextSaleEvaluateTests {
    /// Customers who buy at random from a catalogue whose popularity is skewed (Zipf-like), nothing else: what a
    /// customer buys next is best predicted by what everyone buys most, which is what popularity lists.
    static func randomBuyers(now: Date, count: Int) -> [String: [PurchasedOrder]] {
        var generator = SplitMix(state: 31)
        var customers: [String: [PurchasedOrder]] = [:]
        for customer in 0..<count {
            let orders = 3 + Int(generator.next() % 4)
            customers["random-\(customer)"] = (0..<orders).map { index in
                var basket = Set<String>()
                while basket.count < 3 {
                    let u = Double(generator.next() % 1_000_000) / 1_000_000
                    basket.insert("N\(Int(u * u * u * 120))")
                }
                return PurchasedOrder(
                    orderID: "o\(index)", placedAt: now.addingTimeInterval(-Double(7 * (orders - index)) * 86_400),
                    products: basket.sorted().map { .init(id: $0, category: nil) })
            }
        }
        return customers
    }

    /// Customers who each start a series: a starter S*i* (one of 20) is always followed, in the next order, by its
    /// refill R*i*, beside a random catalogue product — what they buy next follows from what they bought.
    static func seriesBuyers(now: Date, count: Int) -> [String: [PurchasedOrder]] {
        var generator = SplitMix(state: 32)
        var customers: [String: [PurchasedOrder]] = [:]
        for customer in 0..<count {
            let orders = 3 + Int(generator.next() % 4)
            var previous: Int?
            customers["series-\(customer)"] = (0..<orders).map { index in
                var basket: Set<String> = ["N\(Int(generator.next() % 120))"]
                if let previous { basket.insert("R\(previous)") }
                let starter = Int(generator.next() % 20)
                basket.insert("S\(starter)")
                previous = starter
                return PurchasedOrder(
                    orderID: "o\(index)", placedAt: now.addingTimeInterval(-Double(7 * (orders - index)) * 86_400 + 3_600),
                    products: basket.sorted().map { .init(id: $0, category: nil) })
            }
        }
        return customers
    }

    /// Runs a worker command; its status and standard output.
    static func run(_ worker: String, _ arguments: [String], url: String) async throws -> (Int32, String, String) {
        let process = try ChildProcess(worker, arguments, environment: ["DATABASE_URL": url])
        let status = try await process.waitForExit()
        return (status, process.stdout, process.stderr)
    }

    /// The reasons of `recommend`'s list for `user`.
    static func reasons(_ user: String, url: String) async throws -> [String] {
        let (status, output, errors) = try await run("ReceiptWorker", ["recommend", "--store", "shop", "--user-id", user], url: url)
        #expect(status == 0, "\(errors)")
        let answer = try #require(try JSONValue.parse(Array(output.utf8)[...]).objectValue)
        return answer["products"]?.arrayValue?.compactMap { $0["reason"]?.stringValue } ?? []
    }

    @Test func aStoreIsServedItsTopSellersUntilItsBacktestSaysTheModelBeatsThem() async throws {
        let now = Date()
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { postgres.close() }
            try await WorkerApp.migrate(descriptor: ReceiptWorker.descriptor, postgres: postgres, logger: TestEnvironment.logger, timeout: .seconds(30))
            try await postgres.withConnection { _ = try NextSaleEvaluation.load(Self.randomBuyers(now: now, count: 150), store: "shop", connection: $0) }
            func serves() async throws -> String? {
                try await postgres.withConnection { try $0.query("SELECT serves FROM receipt_store_models WHERE store_id = 'shop'").first?.decode(String.self) }
            }
            #expect(try await serves() == nil, "a store never evaluated has no decision")
            #expect(try await Self.reasons("random-0", url: url).contains { $0 != "popular_in_store" }, "and is served the model")

            // A dry run decides nothing.
            let (dryStatus, dryRun, _) = try await Self.run("ReceiptWorker", ["evaluate", "--store", "shop", "--holdout-orders", "2", "--dry-run"], url: url)
            #expect(dryStatus == 0)
            #expect(dryRun.contains("would serve its top sellers"), "\(dryRun)")
            #expect(try await serves() == nil)

            // Random buying: the model does not beat popularity, so the store is served its top sellers.
            let (status, printed, errors) = try await Self.run("ReceiptWorker", ["evaluate", "--store", "shop", "--holdout-orders", "2"], url: url)
            #expect(status == 0, "\(errors)")
            #expect(printed.contains("top sellers by buyers") && printed.contains("model ÷ top sellers by orders"), "\(printed)")
            #expect(printed.contains("serves its top sellers, popular_in_store"), "\(printed)")
            #expect(try await serves() == "popularity")
            let reasons = try await Self.reasons("random-0", url: url)
            #expect(reasons.count == 10 && reasons.allSatisfy { $0 == "popular_in_store" }, "\(reasons)")
            let (_, explained, _) = try await Self.run("CaptureWorker", ["explain", "--store", "shop", "--user-id", "random-0"], url: url)
            #expect(explained.contains("next sale the store is served its top sellers (popular_in_store) — backtest of"), "\(explained)")
            // The backtest ran in its own tables: the store's orders are all there, its model untouched by it.
            let orders = try await postgres.withConnection {
                try $0.query("SELECT count(*) FROM receipt_orders WHERE store_id = 'shop'").first?.decode(Int.self)
            }
            #expect(orders == Self.randomBuyers(now: now, count: 150).values.reduce(0) { $0 + $1.count })

            // Customers whose next order follows from their last join: the model now wins, and serves them again.
            try await postgres.withConnection { _ = try NextSaleEvaluation.load(Self.seriesBuyers(now: now, count: 150), store: "shop", connection: $0) }
            let (again, reprinted, _) = try await Self.run("ReceiptWorker", ["evaluate", "--store", "shop", "--holdout-orders", "2"], url: url)
            #expect(again == 0)
            #expect(reprinted.contains("serves the model"), "\(reprinted)")
            #expect(reprinted.contains("until now popularity"), "\(reprinted)")
            #expect(try await serves() == "model")
            #expect(try await Self.reasons("series-0", url: url).contains { $0 != "popular_in_store" })

            // Erasure takes a shopper's purchase profile and suggestions with their orders' identities; a merge moves a
            // guest's profile into the known shopper's; a shopper whose every order is refunded keeps none.
            let counts = try await postgres.withConnection { connection -> [String] in
                func shopper(_ user: String) throws -> Int64 {
                    try connection.query("SELECT shopper_id FROM rapport_identities WHERE store_id = 'shop' AND kind = 'user_id' AND value = \(user)").first?
                        .decode(Int64.self) ?? 0
                }
                func rows(_ shopper: Int64) throws -> String {
                    try connection.query(
                        """
                        SELECT (SELECT count(*) FROM receipt_shopper_products WHERE store_id = 'shop' AND shopper_id = \(shopper)) || ' '
                            || coalesce((SELECT products::text FROM receipt_shopper_breadth WHERE store_id = 'shop' AND shopper_id = \(shopper)), '-') || ' '
                            || (SELECT count(*) FROM receipt_shopper_suggestions WHERE store_id = 'shop' AND shopper_id = \(shopper))
                        """
                    ).first?.decode(String.self) ?? ""
                }
                var seen: [String] = []
                let (erased, guest, known, refunded) = (try shopper("series-1"), try shopper("series-2"), try shopper("series-3"), try shopper("series-4"))
                seen.append(try rows(erased))
                try connection.execute("SELECT receipt_erase_contact('shop', 0, ARRAY['shop/' || \(erased)])")
                seen.append(try rows(erased))
                let together =
                    try connection.query(
                        """
                        SELECT count(*) FROM (SELECT product_id FROM receipt_shopper_products WHERE store_id = 'shop' AND shopper_id IN (\(guest), \(known))
                                              GROUP BY product_id) p
                        """
                    ).first?.decode(Int.self) ?? 0
                try connection.execute("SELECT receipt_merge_shopper('shop', \(guest), \(known))")
                seen += [try rows(guest), try rows(known), "\(together)"]
                let history = try PurchaseHistory.load([("shop", refunded)], connection: connection)[refunded] ?? []
                try connection.transaction {
                    try ShopperProducts.record([("shop", refunded, ShopperProducts.change(from: history, to: []))], connection: connection)
                }
                seen.append(try rows(refunded))
                return seen
            }
            let before = counts[0].split(separator: " ").compactMap { Int($0) }
            #expect(before.count == 3 && before[0] > 0 && before[1] == before[0] && before[2] > 0, "products, breadth, suggestions before: \(counts[0])")
            #expect(counts[1] == "0 - 0", "nothing of the erased shopper's profile is left: \(counts[1])")
            #expect(counts[2] == "0 - 0", "the guest's rows moved: \(counts[2])")
            #expect(
                counts[3].hasPrefix("\(counts[4]) \(counts[4]) "), "the known shopper holds both profiles, counted again: \(counts[3]), \(counts[4]) products")
            #expect(counts[5] == "0 - 0", "a shopper refunded of everything keeps no profile nor suggestions: \(counts[5])")

            // An unknown store is one line and status 1.
            let (unknown, _, complaint) = try await Self.run("ReceiptWorker", ["evaluate", "--store", "nowhere"], url: url)
            #expect(unknown == 1)
            #expect(complaint.contains("no store nowhere"))
        }
    }
}
