import Foundation
import Shared
import Testing

/// Flat at scale: against a database holding a million shoppers (contacts, identities, ledger, decisions, interests,
/// processed messages — `scripts/sql/seed-shoppers.sql`), a CaptureWorker process handles a realistic mix of events, and no table
/// that grows with shoppers or events is read by a sequential scan, or by an index scan over a range out of proportion
/// to the batch. PostgreSQL's own counters
/// (`pg_stat_user_tables.seq_scan`) judge every statement the worker ran — the pipeline's, the handler's and those
/// inside its PL/pgSQL functions — with the plans the planner really chose for real batches.
@Suite(.serialized) struct CapturePlanTests {
    /// The tables that grow with shoppers, orders, decisions or events.
    static let growing = [
        "capture_shoppers", "rapport_shoppers", "rapport_identities", "rapport_contacts", "rapport_contact_decisions", "capture_consent_ledger",
        "capture_interests", "capture_timeline", "rapport_processed_messages", "rapport_scheduled_steps", "receipt_orders",
    ]

    /// `scripts/sql/seed-shoppers.sql` for `shoppers` shoppers of `store`, processed by `group`.
    static func seedSQL(shoppers: Int, store: String, group: String) throws -> String {
        let text = try String(contentsOf: TestEnvironment.root.appendingPathComponent("scripts/sql/seed-shoppers.sql"), encoding: .utf8)
        return text.replacingOccurrences(of: ":shoppers", with: String(shoppers))
            .replacingOccurrences(of: ":'store'", with: PostgresConnection.quoteLiteral(store))
            .replacingOccurrences(of: ":'group'", with: PostgresConnection.quoteLiteral(group))
    }

    /// Sequential scans, rows fetched through indexes and inserted rows per table so far.
    static func counters(_ fixture: PipelineFixture) async throws -> [String: (seqScans: Int, indexRead: Int, inserted: Int)] {
        var counters: [String: (Int, Int, Int)] = [:]
        for row in try await fixture.query(
            """
            SELECT relname::text, coalesce(seq_scan, 0), coalesce(idx_tup_fetch, 0), coalesce(n_tup_ins, 0)
            FROM pg_stat_user_tables WHERE relname = ANY($1::text[])
            """,
            [PostgresArray(growing)])
        {
            counters[try row.decode(String.self, at: 0) ?? ""] = (
                try row.decode(Int.self, at: 1) ?? 0, try row.decode(Int.self, at: 2) ?? 0, try row.decode(Int.self, at: 3) ?? 0
            )
        }
        return counters
    }

    @Test func noHotStatementReadsAGrowingTableSequentiallyAtAMillionShoppers() async throws {
        try await TestEnvironment.withPipeline(10, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let migrate = try ChildProcess("CaptureWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrate.waitForExit() == 0)
            // ReceiptWorker's tables beside CaptureWorker's, as they are by default: an erasure runs every component's part.
            let migrateReceipt = try ChildProcess("ReceiptWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrateReceipt.waitForExit() == 0)
            let seeding = ContinuousClock.now
            let client = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 1)
            let sql = try Self.seedSQL(shoppers: 1_000_000, store: fixture.store, group: fixture.group)
            try await client.withConnection { connection in
                try connection.executeScript(sql)
                // An order and a journey step already sent for every fifth of them, as ReceiptWorker leaves them: an
                // erasure scrubs a shopper's orders and steps in every state, and must find them by probes (each read
                // its whole table before).
                try connection.execute(
                    """
                    INSERT INTO receipt_orders (store_id, order_id, shopper_key, shopper_id, currency, status, placed_at, message_id, email, total)
                    SELECT store_id, 'seed-order-' || shopper_id, store_id || '/seed-anon-' || substring(email FROM 'seed-([0-9]+)@'),
                           shopper_id, 'EUR', 'completed', created_at, 'seed-order-' || shopper_id, email, 2500
                    FROM capture_shoppers WHERE store_id = $1 AND email LIKE 'seed-%' AND shopper_id % 5 = 0
                    """, [fixture.store])
                try connection.execute("ANALYZE receipt_orders")
                try connection.execute(
                    """
                    INSERT INTO rapport_scheduled_steps (store_id, group_id, journey, template, shopper_key, shopper_id, email, causation_id, due_at, state)
                    SELECT store_id, 'rapport-receipt', 'orientation', 'thank_you', store_id || '/seed-anon-' || substring(email FROM 'seed-([0-9]+)@'),
                           shopper_id, email, 'seed-order-' || shopper_id, created_at + interval '1 day', 'sent'
                    FROM capture_shoppers WHERE store_id = $1 AND email LIKE 'seed-%' AND shopper_id % 5 = 0
                    """, [fixture.store])
                try connection.execute("ANALYZE rapport_scheduled_steps")
            }
            client.close()
            print("seeded 1,000,000 shoppers in \(ContinuousClock.now - seeding)")
            let before = try await Self.counters(fixture)
            #expect(before["capture_shoppers"].map { $0.inserted >= 1_000_000 } == true)

            // Batches as large as an SRE may set (BATCH_SIZE 2000), the backlog waiting before the worker starts, so
            // that a batch carries hundreds of stored contacts: the planner weighs a join against the batch's size,
            // and a statement that probes the index for 150 rows may read the whole table for 700.
            fixture.extraEnvironment = ["BATCH_SIZE": "2000"]
            let events = CaptureWorkerTests.Events(fixture: fixture)
            var messages: [KafkaOutboundMessage] = []
            for k in 1...450 {
                let stored = k * 2000
                // Stored shoppers: browsing, logging in, being captured again, checking out, unsubscribing.
                messages.append(
                    events.track(
                        "Product Viewed", id: "view-\(k)", anonymousID: "seed-anon-\(stored)", minutes: Double(k),
                        properties: ["product_id": .string("p-\(k % 40)"), "category": .string("tea")]))
                messages.append(
                    events.identify(
                        id: "identify-\(k)", userID: "user-\(stored)", anonymousID: "seed-anon-\(stored)",
                        traits: ["email": .string("seed-\(stored)@example.com"), "firstName": .string("Seed")], minutes: Double(k)))
                messages.append(
                    events.capture(
                        id: "again-\(k)", anonymousID: "seed-anon-\(stored + 1)", email: "seed-\(stored + 1)@example.com", marketing: true, minutes: Double(k)))
                if k % 3 == 0 {
                    // New shoppers: pop-up captures with consent.
                    messages.append(
                        events.capture(id: "new-\(k)", anonymousID: "new-anon-\(k)", email: "new-\(k)@example.com", marketing: true, minutes: Double(k)))
                    messages.append(
                        events.track(
                            "Checkout Started", id: "checkout-\(k)", anonymousID: "seed-anon-\(stored + 2)", minutes: Double(k),
                            properties: ["email": .string("seed-\(stored + 2)@example.com")]))
                    messages.append(
                        events.feedback(
                            "Unsubscribed", id: "unsub-\(k)", anonymousID: "seed-anon-\(stored + 3)", email: "seed-\(stored + 3)@example.com",
                            minutes: Double(k)))
                }
                if k % 30 == 0 {
                    // Erasure is rare, but it must not read a store's every identity or shopper to find one.
                    messages.append(
                        events.track(
                            "Erasure Requested", id: "erase-\(k)", anonymousID: "seed-anon-\(stored + 4)", minutes: Double(k),
                            properties: ["email": .string("seed-\(stored + 4)@example.com")]))
                }
            }
            try await fixture.publish(messages)
            try await fixture.startWorker()
            try await fixture.waitUntilConsumed()
            #expect(try await fixture.readToEnd(fixture.commandsTopic).count >= 150, "a welcome per new shopper")
            await fixture.stopWorkers()

            // A backend reports its counters as it exits: wait until the new shoppers show.
            var after = before
            try await fixture.waitForOtherSessionsToEnd()
            try await eventually("the worker's statistics reported", timeout: .seconds(30)) {
                after = try await Self.counters(fixture)
                return (after["capture_shoppers"]?.inserted ?? 0) >= (before["capture_shoppers"]?.inserted ?? 0) + 150
            }
            let scanned = Self.growing.compactMap { table -> String? in
                let delta = (after[table]?.seqScans ?? 0) - (before[table]?.seqScans ?? 0)
                return delta > 0 ? "\(table): \(delta)" : nil
            }
            #expect(scanned.isEmpty, "sequential scans of growing tables while handling \(messages.count) events: \(scanned)")
            // An index scan over a broad range (a store's every user id, to find one shopper's) reads as much as a
            // sequential one: each table may give up a few dozen rows per event through its indexes, not thousands.
            let overRead = Self.growing.compactMap { table -> String? in
                let read = (after[table]?.indexRead ?? 0) - (before[table]?.indexRead ?? 0)
                return read > 50 * messages.count ? "\(table): \(read) rows fetched by index" : nil
            }
            #expect(overRead.isEmpty, "index reads out of proportion to \(messages.count) events: \(overRead)")
            // Counted after the counters were read: a count of a million rows rightly reads the whole table.
            let applied = try await fixture.query("SELECT count(*) FROM rapport_processed_messages WHERE store_id = $1", [fixture.store])
            #expect(try applied.first?.decode(Int.self, at: 0) == 1_000_000 + messages.count, "every event applied")
        }
    }
}
