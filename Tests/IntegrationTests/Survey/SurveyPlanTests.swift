import Foundation
import Shared
import Testing

/// Flat at scale for SurveyWorker: against ReceiptPlanTests' store of a million orders and 250,000 customers, each
/// with a survey response, a profile, preferences and a churn score, and a million win-back steps (200 of them due),
/// a SurveyWorker process handles surveys of stored and of new shoppers while its scheduler decides the due
/// win-backs — and no table that grows with customers, orders, responses, steps or decisions is read by a sequential
/// scan, or through an index over a range out of proportion to the work. (The re-scoring pass is off here: it reads a
/// store's every order by design, in keyset pages.)
@Suite(.serialized) struct SurveyPlanTests {
    static let growing = ReceiptPlanTests.growing + ["survey_responses", "survey_profiles", "survey_churn", "rapport_shopper_preferences"]

    static func seed(store: String, group: String) -> String {
        let s = PostgresConnection.quoteLiteral(store)
        let g = PostgresConnection.quoteLiteral(group)
        return """
            INSERT INTO survey_responses (store_id, message_id, survey_id, shopper_key, shopper_id, answers, submitted_at)
            SELECT \(s), 'sr-' || k, 'onboarding', \(s) || '/c-' || k, k + 1,
                   jsonb_build_object('interests', jsonb_build_array('c-' || (k % 50)), 'channels', jsonb_build_array('instagram'), 'note', 'free text ' || k),
                   now() - interval '100 days'
            FROM generate_series(0, 249999) k;
            INSERT INTO survey_profiles (store_id, shopper_id, interests, channels, other, responses, first_at, last_at)
            SELECT \(s), k + 1, ARRAY['c-' || (k % 50)], ARRAY['instagram'], jsonb_build_object('note', 'free text ' || k), 1,
                   now() - interval '100 days', now() - interval '100 days'
            FROM generate_series(0, 249999) k;
            INSERT INTO rapport_shopper_preferences (store_id, shopper_id, interests, channels)
            SELECT \(s), k + 1, ARRAY['c-' || (k % 50)], ARRAY['instagram'] FROM generate_series(0, 249999) k;
            INSERT INTO survey_churn (store_id, shopper_id, orders, first_order_at, last_order_at, expected_gap_days, overdue, risk, band, scored_at,
                                      win_back_after)
            SELECT \(s), k + 1, 4, now() - interval '300 days', now() - interval '60 days', 30, 2, 0.5, 'medium', now() - interval '1 hour', NULL
            FROM generate_series(0, 249999) k;
            INSERT INTO rapport_scheduled_steps (store_id, group_id, journey, template, shopper_key, shopper_id, email, causation_id, data, due_at, state, reason)
            SELECT \(s), \(g), 'win_back', 'win_back', \(s) || '/c-' || (n % 250000), n % 250000 + 1, 'c-' || (n % 250000) || '@example.com',
                   'win_back:' || n, jsonb_build_object('last_order_at', to_char((now() - interval '10 years') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                   CASE WHEN n <= 200 THEN now() - interval '1 minute' WHEN n % 5 = 0 THEN now() + interval '30 days' ELSE now() - interval '30 days' END,
                   CASE WHEN n <= 200 OR n % 5 = 0 THEN 'pending' ELSE 'sent' END, CASE WHEN n <= 200 OR n % 5 = 0 THEN NULL ELSE 'permitted' END
            FROM generate_series(1, 1000000) n;
            ANALYZE;
            """
    }

    @Test func noHotStatementReadsAGrowingTableSequentiallyAtAMillionOrders() async throws {
        try await TestEnvironment.withPipeline(6, executable: "SurveyWorker", prefix: "it-srv") { fixture in
            for executable in ["ReceiptWorker", "SurveyWorker"] {
                let migrate = try ChildProcess(executable, ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
                #expect(try await migrate.waitForExit() == 0)
            }
            let seeding = ContinuousClock.now
            let client = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 1)
            let orders = ReceiptPlanTests.seed(store: fixture.store, group: fixture.group + "-receipt")
            let surveys = Self.seed(store: fixture.store, group: fixture.group)
            try await client.withConnection { connection in
                try connection.executeScript(orders)
                try connection.executeScript(surveys)
            }
            client.close()
            print("seeded 1,000,000 orders and 250,000 customers' surveys in \(ContinuousClock.now - seeding)")
            var before = try await ReceiptPlanTests.counters(fixture, tables: Self.growing)
            try await eventually("the seed's statistics reported", timeout: .seconds(30)) {
                before = try await ReceiptPlanTests.counters(fixture, tables: Self.growing)
                return (before["rapport_scheduled_steps"]?.inserted ?? 0) >= 2_000_000
            }

            fixture.extraEnvironment = [
                "CHURN_RESCORE_SECONDS": "0", "SCHEDULER_INTERVAL_MS": "100",
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(
                    fixture, #"{"quiet_hours": null, "pressure": [], "survey_acknowledgement": true}"#), "BATCH_SIZE": "2000",
            ]
            // Batches as large as an SRE may set, from a backlog waiting before the worker starts (CapturePlanTests
            // says why: a join that probes for 150 rows may read the whole table for 700).
            let events = SurveyWorkerTests.Events(fixture: fixture)
            var messages: [KafkaOutboundMessage] = []
            for k in 1...450 {
                // A stored customer's second survey (with orders, a profile, preferences), and a new shopper's first.
                messages.append(
                    events.survey(
                        "again-\(k)", userID: "c-\(k * 500)", minutes: Double(k),
                        answers: .object([
                            "interests": .array([.string("c-\(k % 50)")]), "channels": .array([.string("events")]),
                            "habits": .object(["when": .string("evening")]),
                        ])))
                messages.append(
                    events.survey(
                        "new-\(k)", userID: "new-\(k)", email: "new-\(k)@example.com", minutes: Double(k),
                        answers: .object([
                            "interests": .array([.string("c-\(k % 50)")]), "income_band": .string("50-75k"),
                        ])))
            }
            try await fixture.publish(messages)
            try await fixture.startWorker()
            try await fixture.waitUntilConsumed()
            try await eventually("the due win-backs decided", timeout: .seconds(60)) {
                try await fixture.query(
                    "SELECT 1 FROM rapport_scheduled_steps WHERE group_id = $1 AND state = 'pending' AND due_at <= now() AND attempts = 0 ORDER BY due_at LIMIT 1",
                    [fixture.group]
                ).count == 0
            }
            let sent = try await fixture.readToEnd(fixture.recommendationsTopic).count
            #expect(sent >= 900, "a post_survey recommendation per survey, and the win-backs'")
            await fixture.stopWorkers()

            var after = before
            try await fixture.waitForOtherSessionsToEnd()
            try await eventually("the worker's statistics reported", timeout: .seconds(30)) {
                after = try await ReceiptPlanTests.counters(fixture, tables: Self.growing)
                return (after["survey_responses"]?.inserted ?? 0) >= (before["survey_responses"]?.inserted ?? 0) + 900
            }
            ReceiptPlanTests.expectFlat(
                before: before, after: after, tables: Self.growing, work: messages.count + 200, doing: "\(messages.count) surveys and 200 due win-backs")
        }
    }
}
