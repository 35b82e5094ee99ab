import Foundation
import NextSale
import Shared
import Testing

/// ReceiptWorker end to end: the worker as its own process, real PostgreSQL, the embedded Kafka.
@Suite(.serialized) struct ReceiptWorkerTests {
    /// Builds `checkout-events` messages for one fixture's store.
    struct Events {
        /// Two hours ago, to the minute: recent enough to converse.
        static let base = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 2 * 3600)

        let fixture: PipelineFixture
        var store: String { fixture.store }

        struct Line {
            var product: String
            var price: Double
            var quantity = 1
            var category: String? = nil
        }

        /// A track event; its anonymous id is the customer's own device's (`anon-<userID>`, a guest's `anon-guest`) unless
        /// given: one anonymous id shared by every customer would make them one shopper.
        func track(
            _ event: String, id: String, userID: String?, anonymousID: String? = nil, minutes: Double, properties: [String: JSONValue],
            context: [String: JSONValue] = [:]
        ) -> KafkaOutboundMessage {
            let anonymousID = anonymousID ?? "anon-\(userID ?? "guest")"
            var context = context
            context["storeId"] = .string(store)
            var body: [String: JSONValue] = [
                "type": .string("track"), "event": .string(event), "messageId": .string(id), "anonymousId": .string(anonymousID),
                "timestamp": .string(Self.base.addingTimeInterval(minutes * 60).rfc3339), "properties": .object(properties), "context": .object(context),
            ]
            if let userID { body["userId"] = .string(userID) }
            return KafkaOutboundMessage(
                topic: fixture.inputTopic, key: Array("\(store)/\(userID ?? anonymousID)".utf8), value: JSONValue.object(body).encoded())
        }

        func order(
            _ orderID: String, id: String? = nil, userID: String? = "u-1", email: String? = "ana@example.com", minutes: Double = 0,
            currency: String = "EUR", lines: [Line], extra: [String: JSONValue] = [:], locale: String? = nil
        ) -> KafkaOutboundMessage {
            var properties: [String: JSONValue] = [
                "order_id": .string(orderID), "currency": .string(currency),
                "products": .array(
                    lines.map { line in
                        var product: [String: JSONValue] = [
                            "product_id": .string(line.product), "name": .string("Product \(line.product)"), "price": .number(line.price),
                            "quantity": .number(Double(line.quantity)),
                        ]
                        if let category = line.category { product["category"] = .string(category) }
                        return .object(product)
                    }),
            ]
            if let email { properties["email"] = .string(email) }
            properties.merge(extra) { _, new in new }
            var context: [String: JSONValue] = ["traits": .object(["firstName": .string("Ana")])]
            if let locale { context["locale"] = .string(locale) }
            return track("Order Completed", id: id ?? "m-\(orderID)", userID: userID, minutes: minutes, properties: properties, context: context)
        }
    }

    static func commands(_ fixture: PipelineFixture, _ topic: String) async throws -> [[String: JSONValue]] {
        try await fixture.waitUntilConsumed()
        return try await fixture.readToEnd(topic).compactMap { try? JSONValue.parse($0.value).objectValue }
    }

    /// Waits until the worker has folded every change of the next-sale model into its tables.
    static func modelFolded(_ fixture: PipelineFixture, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        let client = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 1)
        defer { client.close() }
        while try await !client.withConnection({ try PurchaseModelStore.isFolded(connection: $0) }) {
            guard ContinuousClock.now < deadline else { throw TestFailure("the model's changes were not folded within \(timeout)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    static func decisions(_ fixture: PipelineFixture) async throws -> [String] {
        try await fixture.query(
            "SELECT subject, template, decision, reason FROM rapport_contact_decisions WHERE store_id = $1 ORDER BY subject, template", [fixture.store]
        ).map { row in (0..<4).map { (try? row.decode(String.self, at: $0)) ?? "" }.joined(separator: " ") }
    }

    @Test func anOrderIsRecordedOnceAndGetsItsBountifulReceiptAndAPostPurchaseRecommendation() async throws {
        try await TestEnvironment.withPipeline(1, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let events = Events(fixture: fixture)
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(
                    fixture,
                    #"{"brand_story": "We grow tea on small farms. Since 1990.", "signature": "Mia", "social_links": [{"name": "Instagram", "url": "https://instagram.com/t"}]}"#
                )
            ]
            try await fixture.startWorker()
            let order = events.order(
                "o-1", lines: [.init(product: "sencha", price: 12.5, quantity: 2, category: "tea"), .init(product: "cup", price: 9.9)],
                extra: ["tax": .number(3.5), "shipping": .number(4.9), "discount": .number(5)], locale: "de-DE")
            try await fixture.publish([
                order, order,  // published twice: one effect
                events.order("o-1", id: "resent", lines: [.init(product: "other", price: 1)]),  // the same order under a new messageId
                events.order("o-2", userID: nil, email: nil, minutes: 1, lines: [.init(product: "cup", price: 9.9)]),  // no address
                events.order("o-3", userID: "u-3", email: "yu@example.com", minutes: 2, currency: "JPY", lines: [.init(product: "matcha", price: 5990)]),
                events.order(
                    "o-4", userID: "u-4", email: "ali@example.com", minutes: 3, currency: "BHD", lines: [.init(product: "kettle", price: 1.25, quantity: 3)]),
                events.track("Cart Viewed", id: "noise", userID: "u-1", minutes: 4, properties: [:]),
            ])
            try await CaptureWorkerTests.processed(fixture, 6)
            // Different shoppers' commands reach the topic's partitions in no fixed order.
            let emails = try await Self.commands(fixture, fixture.commandsTopic).sorted {
                ($0["data"]?["order_id"]?.stringValue ?? "") < ($1["data"]?["order_id"]?.stringValue ?? "")
            }
            #expect(emails.map { $0["data"]?["order_id"] } == [.string("o-1"), .string("o-3"), .string("o-4")], "one receipt per order with an address")
            let receipt = try #require(emails.first)
            #expect(receipt["template"] == .string("receipt") && receipt["category"] == .string("transactional"))
            #expect(receipt["to"]?["email"] == .string("ana@example.com") && receipt["to"]?["name"] == .string("Ana"))
            #expect(receipt["unsubscribe_token"] == nil, "transactional mail carries none")
            let data = try #require(receipt["data"]?.objectValue)
            #expect(data["items"]?.arrayValue?.count == 2)
            let first = try #require(data["items"]?.arrayValue?.first?.objectValue)
            #expect(first["product_id"] == .string("sencha") && first["quantity"] == .number(2))
            #expect(
                first["unit_price"] == .string("12.50") && first["line_total"] == .string("25.00") && first["line_total_formatted"] == .string("25,00\u{a0}€"))
            #expect(
                data["subtotal"] == .string("34.90") && data["tax"] == .string("3.50") && data["shipping"] == .string("4.90")
                    && data["discount"] == .string("5.00"))
            #expect(data["total"] == .string("38.30") && data["total_formatted"] == .string("38,30\u{a0}€"), "subtotal + tax + shipping − discount")
            #expect(data["introduction"]?["brand_story_teaser"] == .string("We grow tea on small farms."))
            #expect(data["introduction"]?["signature"] == .string("Mia"))
            #expect(data["store"]?["brand_story"] == .string("We grow tea on small farms. Since 1990."))
            #expect(emails[1]["data"]?["total"] == .string("5990"), "JPY has no minor unit")
            #expect(
                emails[2]["data"]?["total"] == .string("3.750") && emails[2]["data"]?["items"]?.arrayValue?.first?["unit_price"] == .string("1.250"),
                "BHD has three")
            let stored = try await fixture.query("SELECT order_id, total, currency FROM receipt_orders WHERE store_id = $1 ORDER BY order_id", [fixture.store])
            #expect(try stored.map { try $0.decode(String.self, at: 0) ?? "" } == ["o-1", "o-2", "o-3", "o-4"], "the order without an address is recorded")
            #expect(try stored.first?.decode(Int64.self, at: 1) == 3830)
            let items = try await fixture.query("SELECT count(*) FROM receipt_order_items WHERE store_id = $1 AND order_id = 'o-1'", [fixture.store])
            #expect(try items.first?.decode(Int.self, at: 0) == 2, "the resent order changed nothing")
            let decisions = try await Self.decisions(fixture)
            #expect(decisions.contains("order:o-2 receipt dropped no_address"))
            // One post_purchase per new order — or, where the model had nothing yet (the store's first batch), a
            // decision saying so; never the order's own products.
            let recommendations = try await Self.commands(fixture, fixture.recommendationsTopic)
            #expect(recommendations.allSatisfy { $0["context"] == .string("post_purchase") && $0["type"] == .string("RecommendProducts") })
            let empty = try await fixture.query(
                """
                SELECT causation_id FROM rapport_contact_decisions
                WHERE store_id = $1 AND template = 'recommend:post_purchase' AND decision = 'dropped' AND reason = 'nothing_to_recommend'
                """, [fixture.store]
            ).compactMap { try $0.decode(String.self, at: 0) }
            #expect(
                Set(recommendations.compactMap { $0["causation_id"]?.stringValue } + empty) == ["m-o-1", "m-o-2", "m-o-3", "m-o-4"],
                "each order once: a list or the reason there is none")
            let own = ["m-o-1": ["sencha", "cup"], "m-o-2": ["cup"], "m-o-3": ["matcha"], "m-o-4": ["kettle"]]
            for recommendation in recommendations {
                let products = recommendation["products"]?.arrayValue?.compactMap { $0["product_id"]?.stringValue } ?? []
                #expect(
                    !products.isEmpty && Set(products).isDisjoint(with: own[recommendation["causation_id"]?.stringValue ?? ""] ?? []),
                    "never what is in the triggering order")
                #expect(recommendation["products"]?.arrayValue?.allSatisfy { $0["reason"] != .string("bought_next_by_others") } == true)
            }
        }
    }

    @Test func aHistoryImportTrainsTheModelAndEmitsNothingThenASuccessionIsRecommended() async throws {
        try await TestEnvironment.withPipeline(2, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let events = Events(fixture: fixture)
            try await fixture.startWorker()
            let yearAgo = -365.0 * 24 * 60
            var history: [KafkaOutboundMessage] = []
            // Four hundred customers bought A, then B in their next order — four times the follows a succession needs to
            // outweigh the store's top sellers (`NextSaleTuning.successionPrior`) — and thirty bought P (popular) twice.
            for n in 0..<400 {
                history.append(
                    events.order(
                        "a-\(n)", userID: "c-\(n)", email: "c\(n)@example.com", minutes: yearAgo + Double(n),
                        lines: [.init(product: "A", price: 10, category: "tea")]))
                history.append(
                    events.order(
                        "b-\(n)", userID: "c-\(n)", email: "c\(n)@example.com", minutes: yearAgo + 1000 + Double(n),
                        lines: [.init(product: "B", price: 10, category: "pots")]))
            }
            for n in 0..<30 {
                for k in 0..<2 {
                    history.append(
                        events.order(
                            "p-\(n)-\(k)", userID: "p-\(n)", email: "p\(n)@example.com", minutes: -60 * 24 * Double(10 + k),
                            lines: [.init(product: "P", price: 5)]))
                }
            }
            // Stale: a year old, or ten days — older than 72 hours.
            try await fixture.publish(history)
            try await CaptureWorkerTests.processed(fixture, history.count)
            try await Self.modelFolded(fixture)
            #expect(try await Self.commands(fixture, fixture.commandsTopic).isEmpty, "history is not a conversation: no receipt")
            #expect(try await Self.commands(fixture, fixture.recommendationsTopic).isEmpty, "and no recommendation")
            let stale = try await fixture.query(
                "SELECT count(*) FROM rapport_contact_decisions WHERE store_id = $1 AND decision = 'dropped' AND reason = 'stale_event'", [fixture.store])
            #expect(try stale.first?.decode(Int.self, at: 0) == history.count * 2, "each receipt and recommendation recorded as dropped")
            let transitions = try await fixture.query(
                "SELECT count FROM receipt_transitions WHERE store_id = $1 AND from_product = 'A' AND to_product = 'B'", [fixture.store])
            #expect(try transitions.first?.decode(Int.self, at: 0) == 400, "the model learned A → B")

            // A new customer buys A now: B comes first, above the merely popular P.
            try await fixture.publish([events.order("new-1", userID: "n-1", email: "new@example.com", lines: [.init(product: "A", price: 10, category: "tea")])]
            )
            try await CaptureWorkerTests.processed(fixture, history.count + 1)
            try await Self.modelFolded(fixture)
            // Off the order path, the compactor computes the new customer's "customers like you": those who bought A
            // also bought B.
            try await eventually("the new customer's suggestions computed", timeout: .seconds(60)) {
                try await fixture.query(
                    """
                    SELECT 1 FROM receipt_shopper_suggestions s JOIN rapport_identities i ON i.store_id = s.store_id AND i.shopper_id = s.shopper_id
                    WHERE s.store_id = $1 AND i.kind = 'user_id' AND i.value = 'n-1' AND s.product_id = 'B'
                    """, [fixture.store]
                ).count == 1
            }
            let recommendation = try #require(try await Self.commands(fixture, fixture.recommendationsTopic).first)
            let products = recommendation["products"]?.arrayValue ?? []
            #expect(products.first?["product_id"] == .string("B"))
            #expect(products.first?["reason"] == .string("bought_next_by_others"))
            #expect(
                products.dropFirst().first?["product_id"] == .string("P") && products.dropFirst().first?["reason"] == .string("popular_in_store"),
                "the merely popular product after the succession")
            #expect(!products.contains { $0["product_id"] == .string("A") }, "never what they bought")

            // The operator's view, as of now, for the same shopper.
            let recommend = try ChildProcess(
                "ReceiptWorker", ["recommend", "--store", fixture.store, "--user-id", "n-1", "--limit", "2"], environment: ["DATABASE_URL": fixture.databaseURL]
            )
            #expect(try await recommend.waitForExit() == 0)
            let answer = try #require(try JSONValue.parse(Array(recommend.stdout.utf8)[...]).objectValue)
            #expect(answer["store_id"] == .string(fixture.store) && answer["shopper"]?["user_id"] == .string("n-1"))
            #expect(answer["products"]?.arrayValue?.compactMap { $0["product_id"]?.stringValue } == ["B", "P"])
            let unknown = try ChildProcess(
                "ReceiptWorker", ["recommend", "--store", fixture.store, "--email", "nobody@example.com"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await unknown.waitForExit() == 1)
            #expect(unknown.stderr.contains("no shopper with email nobody@example.com"))

            // A rebuild from the orders finds the counts the increments left.
            func model() async throws -> [String] {
                var rows: [String] = []
                // The counts, and each shopper's products and breadth (not when their suggestions were computed).
                for (table, row) in [
                    ("receipt_product_stats", "t::text"), ("receipt_transitions", "t::text"), ("receipt_copurchases", "t::text"),
                    ("receipt_category_transitions", "t::text"), ("receipt_daily_sales", "t::text"), ("receipt_shopper_products", "t::text"),
                    ("receipt_shopper_breadth", "(t.shopper_id, t.products)::text"),
                ] {
                    rows += try await fixture.query("SELECT \(row) FROM \(table) t WHERE store_id = $1 ORDER BY 1", [fixture.store])
                        .map { table + " " + ((try? $0.decode(String.self, at: 0)) ?? "") }
                }
                return rows
            }
            let incremental = try await model()
            #expect(incremental.count > 10)
            #expect(incremental.contains { $0.hasPrefix("receipt_shopper_products ") } && incremental.contains { $0.hasPrefix("receipt_shopper_breadth ") })
            _ = try await fixture.query("DELETE FROM receipt_transitions WHERE store_id = $1", [fixture.store])
            _ = try await fixture.query("DELETE FROM receipt_shopper_products WHERE store_id = $1", [fixture.store])
            let rebuild = try ChildProcess("ReceiptWorker", ["rebuild", "--store", fixture.store], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await rebuild.waitForExit() == 0)
            #expect(rebuild.stdout.contains("from 861 orders of 431 customers"))
            #expect(try await model() == incremental)
        }
    }

    @Test func aRefundTakesTheOrderOutOfTheModelAndABadOrderGoesToTheDeadLetterTopic() async throws {
        try await TestEnvironment.withPipeline(3, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let events = Events(fixture: fixture)
            try await fixture.startWorker()
            try await fixture.publish([
                events.order("r-1", lines: [.init(product: "A", price: 10)]),
                events.order("r-2", minutes: 1, lines: [.init(product: "B", price: 10)]),
                events.order("bad", minutes: 2, lines: [], extra: ["currency": .string("euros")]),
                events.track("Order Completed", id: "no-id", userID: "u-1", minutes: 3, properties: ["currency": .string("EUR")]),
            ])
            try await CaptureWorkerTests.processed(fixture, 2)
            try await Self.modelFolded(fixture)
            let before = try await fixture.query(
                "SELECT count FROM receipt_transitions WHERE store_id = $1 AND from_product = 'A' AND to_product = 'B'", [fixture.store])
            #expect(try before.first?.decode(Int.self, at: 0) == 1)
            try await fixture.publish([events.track("Order Refunded", id: "refund-2", userID: "u-1", minutes: 5, properties: ["order_id": .string("r-2")])])
            try await CaptureWorkerTests.processed(fixture, 3)
            try await Self.modelFolded(fixture)
            let status = try await fixture.query("SELECT status FROM receipt_orders WHERE store_id = $1 AND order_id = 'r-2'", [fixture.store])
            #expect(try status.first?.decode(String.self, at: 0) == "refunded")
            let after = try await fixture.query("SELECT count(*) FROM receipt_transitions WHERE store_id = $1 AND count > 0", [fixture.store])
            #expect(try after.first?.decode(Int.self, at: 0) == 0, "A → B is gone with the refunded order")
            let stats = try await fixture.query(
                "SELECT product_id, orders, followed FROM receipt_product_stats WHERE store_id = $1 AND (orders <> 0 OR followed <> 0) ORDER BY 1",
                [fixture.store])
            #expect(
                try stats.map { "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(Int.self, at: 1) ?? -1) \(try $0.decode(Int.self, at: 2) ?? -1)" }
                    == ["A 1 0"])
            // "Customers like you" forgets the refunded order too: the shopper bought A, once.
            let profile = try await fixture.query(
                "SELECT product_id || ' ' || orders FROM receipt_shopper_products WHERE store_id = $1 ORDER BY 1", [fixture.store])
            #expect(try profile.map { try $0.decode(String.self, at: 0) ?? "" } == ["A 1"])
            let breadth = try await fixture.query("SELECT products FROM receipt_shopper_breadth WHERE store_id = $1", [fixture.store])
            #expect(try breadth.map { try $0.decode(Int.self, at: 0) ?? -1 } == [1])
            let dead = try await fixture.readToEnd(fixture.deadLetterTopic)
            #expect(dead.count == 2)
            let reasons = dead.map { message in message.headers.first { $0.key == "dlq.message" }.map { String(decoding: $0.value ?? [], as: UTF8.self) } ?? ""
            }
            #expect(reasons.contains { $0.contains("properties.currency must be an ISO 4217 code") })
            #expect(reasons.contains { $0.contains("properties.order_id is required") })
        }
    }

    /// During a rollout, pods of the previous release append the model's changes a row per entry to
    /// `receipt_model_changes`: the new fold moves them into sets and folds them with the new pods' sets.
    @Test func changesAppendedByThePreviousReleaseAreFoldedWithTheNewSets() async throws {
        try await TestEnvironment.withPipeline(15, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let migrate = try ChildProcess("ReceiptWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrate.waitForExit() == 0)
            _ = try await fixture.query(
                """
                INSERT INTO receipt_model_changes (store_id, kind, a, b, count) VALUES
                    ($1, 'orders', 'X', 'tea', 3), ($1, 'followed', 'X', NULL, 2), ($1, 'transition', 'X', 'Y', 2),
                    ($1, 'together', 'X', 'Z', 1), ($1, 'category_transition', 'tea', 'pots', 2), ($1, 'daily', 'X', '2026-12-01', 3)
                """, [fixture.store])
            _ = try await fixture.query(
                "INSERT INTO receipt_model_change_sets (store_id, kind, a, b, count, entries) VALUES ($1, 'transition', '{X,Y}', '{Y,X}', '{1,4}', 2)",
                [fixture.store])
            try await fixture.startWorker()
            try await Self.modelFolded(fixture)
            func rows(_ sql: String) async throws -> [String] {
                try await fixture.query(sql, [fixture.store]).map { (try? $0.decode(String.self, at: 0)) ?? "" }
            }
            #expect(
                try await rows("SELECT from_product || '>' || to_product || ' ' || count FROM receipt_transitions WHERE store_id = $1 ORDER BY 1")
                    == ["X>Y 3", "Y>X 4"])
            #expect(
                try await rows("SELECT product_id || ' ' || category || ' ' || orders || ' ' || followed FROM receipt_product_stats WHERE store_id = $1")
                    == ["X tea 3 2"])
            #expect(try await rows("SELECT from_product || '+' || to_product || ' ' || count FROM receipt_copurchases WHERE store_id = $1") == ["X+Z 1"])
            #expect(
                try await rows("SELECT from_category || '>' || to_category || ' ' || count FROM receipt_category_transitions WHERE store_id = $1")
                    == ["tea>pots 2"])
            #expect(try await rows("SELECT product_id || ' ' || day || ' ' || orders FROM receipt_daily_sales WHERE store_id = $1") == ["X 2026-12-01 3"])
        }
    }
}
