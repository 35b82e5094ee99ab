import Foundation
import Shared
import Testing

/// Batching is an optimisation, never a change of meaning: the same checkout stream, fed to one ReceiptWorker one event
/// per batch and to another in one batch of 2,000, gives the same commands and the same rows — orders, journey steps,
/// decisions. The stream holds what a batch boundary used to change: an order refunded or cancelled seconds after it
/// was placed, a repeat order minutes after a first, two repeats, an order refunded and followed by a new one, refunds
/// before and after a repeat order (each ended step with the reason it had one event at a time), a duplicate.
@Suite(.serialized) struct BatchEquivalenceTests {
    /// The store's journey far enough out that no step falls due while the test runs, no quiet hours, no caps.
    static let settings =
        #"{"quiet_hours": null, "pressure": [], "journey": {"thank_you_hours": 48, "survey_invite_hours": 72, "why_we_exist_hours": 168, "next_sale_hours": 504, "walk_with_me_hours": 720}}"#

    /// The stream, for `fixture`'s store.
    static func stream(_ fixture: PipelineFixture) -> [KafkaOutboundMessage] {
        let events = ReceiptWorkerTests.Events(fixture: fixture)
        func order(_ id: String, _ user: String, _ minutes: Double, _ products: [String]) -> KafkaOutboundMessage {
            events.order(id, userID: user, email: "\(user)@example.com", minutes: minutes, lines: products.map { .init(product: $0, price: 4.5) })
        }
        func end(_ event: String, _ id: String, _ user: String, _ minutes: Double) -> KafkaOutboundMessage {
            events.track(event, id: "\(event)-\(id)", userID: user, minutes: minutes, properties: ["order_id": .string(id)])
        }
        return [
            // A first order, and the forgotten item three seconds later: one thank-you naming both.
            order("o-a1", "ann", 0, ["tea", "cup"]), order("o-a2", "ann", 0.05, ["spoon"]),
            // Refunded and cancelled seconds after they were placed: each still got its receipt.
            order("o-b1", "bob", 1, ["tea"]), end("Order Refunded", "o-b1", "bob", 1.2),
            order("o-c1", "cat", 2, ["pot"]), end("Order Cancelled", "o-c1", "cat", 2.5),
            // Two repeats after a first order.
            order("o-d1", "dan", 3, ["tea"]), order("o-d2", "dan", 4, ["honey"]), order("o-d3", "dan", 5, ["lemon"]),
            // Refunded, then a new order: the new one is the customer's first that stands.
            order("o-e1", "eve", 6, ["tea"]), end("Order Refunded", "o-e1", "eve", 7), order("o-e2", "eve", 8, ["mug"]),
            // Ten days of history, then a recent order: a repeat within 30 days, no thank-you of its own.
            order("o-f1", "fay", -10 * 24 * 60, ["tea"]), order("o-f2", "fay", 9, ["cup"]),
            // Forty days after the last order: a repeat that earns a thank-you of its own.
            order("o-g1", "gus", -40 * 24 * 60, ["tea"]), order("o-g2", "gus", 10, ["pot"]),
            // A repeat that earns its own thank-you, refunded, then another repeat: the refund ended that thank-you
            // (order_refunded) before the next order came; the next earns its own.
            order("o-h1", "hal", -40 * 24 * 60, ["tea"]), order("o-h2", "hal", 11, ["pot"]), end("Order Refunded", "o-h2", "hal", 11.5),
            order("o-h3", "hal", 12, ["cup"]),
            // A first order, a repeat that takes over its thank-you, then the first refunded: superseded, then refunded.
            order("o-i1", "ivy", 13, ["tea"]), order("o-i2", "ivy", 14, ["mug"]), end("Order Refunded", "o-i1", "ivy", 15),
            // A duplicate publish.
            order("o-a2", "ann", 0.05, ["spoon"]),
        ]
    }

    /// What a fixture's worker did, with the store's name and every command id taken out (they name the store).
    struct Outcome: Equatable {
        var commands: [String]
        var orders: [String]
        var steps: [String]
        var decisions: [String]
    }

    static func outcome(_ fixture: PipelineFixture) async throws -> Outcome {
        try await fixture.waitUntilConsumed()
        return Outcome(
            commands: try await fixture.comparableCommands(),
            orders: try await fixture.comparableRows(
                "SELECT concat_ws(' ', order_id, status, total, placed_at, ended_at, shopper_key) FROM receipt_orders WHERE store_id = $1"),
            steps: try await fixture.comparableRows(
                """
                SELECT concat_ws(' ', template, causation_id, order_id, state, reason, due_at, email, data::text)
                FROM rapport_scheduled_steps WHERE store_id = $1
                """),
            decisions: try await fixture.comparableRows(
                """
                SELECT concat_ws(' ', subject, template, decision, reason, causation_id, command_id IS NOT NULL, decided_at)
                FROM rapport_contact_decisions WHERE store_id = $1
                """))
    }

    @Test func theSameStreamInBatchesOfOneAndOfTwoThousandGivesTheSameCommandsAndRows() async throws {
        let one = try await TestEnvironment.withPipeline(13, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            // The model folded once an hour: a recommendation reads the same (empty) model in both runs.
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, Self.settings), "BATCH_SIZE": "1", "MODEL_FOLD_INTERVAL_MS": "3600000",
            ]
            try await fixture.startWorker()
            try await fixture.publish(Self.stream(fixture))
            return try await Self.outcome(fixture)
        }
        let many = try await TestEnvironment.withPipeline(14, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, Self.settings), "BATCH_SIZE": "2000", "BATCH_TRANSACTIONS": "1",
                "MODEL_FOLD_INTERVAL_MS": "3600000", "LOG_LEVEL": "debug",
            ]
            // Everything waits on the topic before the worker starts: its first poll takes the whole stream.
            try await fixture.publish(Self.stream(fixture))
            try await fixture.startWorker()
            let outcome = try await Self.outcome(fixture)
            // The batches as the worker logged them: each holds a partition's events at least, where order and refund meet.
            let sizes = (fixture.workers.first?.stdout ?? "").split(separator: "\n").compactMap { line -> Int? in
                guard let range = line.range(of: #""batch.size":""#) else { return nil }
                return Int(line[range.upperBound...].prefix { $0.isNumber })
            }
            #expect((sizes.max() ?? 0) >= 4, "batches of several events: \(sizes)")
            return outcome
        }
        #expect(one.commands == many.commands, "commands: \(Set(one.commands).symmetricDifference(many.commands))")
        #expect(one.orders == many.orders, "orders: \(Set(one.orders).symmetricDifference(many.orders))")
        #expect(one.steps == many.steps, "steps: \(Set(one.steps).symmetricDifference(many.steps))")
        #expect(one.decisions == many.decisions, "decisions: \(Set(one.decisions).symmetricDifference(many.decisions))")

        // And what each should be: every order that was placed recently got its receipt, refunded or not.
        let receipts = many.commands.filter { $0.contains(#""template":"receipt""#) }
        for id in ["o-a1", "o-a2", "o-b1", "o-c1", "o-d1", "o-d2", "o-d3", "o-e1", "o-e2", "o-f2", "o-g2", "o-h2", "o-h3", "o-i1", "o-i2"] {
            #expect(receipts.contains { $0.contains(#""order_id":"\#(id)""#) }, "a receipt for \(id)")
        }
        #expect(receipts.count == 15, "once each: \(receipts.count)")
        func steps(_ template: String, _ order: String) -> [String] { many.steps.filter { $0.hasPrefix("\(template) m-\(order) \(order) ") } }
        // Ann's thank-you: the first order's ended, superseded; the repeat's names what she bought in both.
        #expect(steps("thank_you", "o-a1").first?.contains("cancelled superseded_by_newer_order") == true, "\(steps("thank_you", "o-a1"))")
        let annThanks = try #require(steps("thank_you", "o-a2").first)
        #expect(annThanks.contains("pending"))
        for product in ["tea", "cup", "spoon"] { #expect(annThanks.contains(#""product_id": "\#(product)""#), "\(annThanks)") }
        // Dan's last repeat carries the thank-you; Bob's and Cat's journeys ended with their orders; Eve's new order is a first.
        #expect(steps("thank_you", "o-d3").first?.contains("pending") == true)
        #expect(steps("thank_you", "o-d2").first?.contains("superseded_by_newer_order") == true)
        #expect(steps("thank_you", "o-b1").first?.contains("cancelled order_refunded") == true, "\(steps("thank_you", "o-b1"))")
        #expect(steps("survey_invite", "o-c1").first?.contains("cancelled order_cancelled") == true)
        #expect(steps("thank_you", "o-e2").first?.contains("pending") == true && steps("walk_with_me", "o-e2").count == 1)
        #expect(steps("thank_you", "o-f2").isEmpty, "a repeat within 30 days of a thanked order earns no second thank-you")
        #expect(steps("thank_you", "o-g2").first?.contains("pending") == true, "a repeat 40 days after the last order earns one")
        // Each ended thank-you with the reason it had one event at a time.
        #expect(steps("thank_you", "o-h2").first?.contains("cancelled order_refunded") == true, "\(steps("thank_you", "o-h2"))")
        #expect(steps("thank_you", "o-h3").first?.contains("pending") == true, "\(steps("thank_you", "o-h3"))")
        #expect(steps("thank_you", "o-i1").first?.contains("cancelled superseded_by_newer_order") == true, "\(steps("thank_you", "o-i1"))")
        #expect(steps("survey_invite", "o-i1").first?.contains("cancelled order_refunded") == true)
        #expect(steps("thank_you", "o-i2").first?.contains("pending") == true)
    }
}
