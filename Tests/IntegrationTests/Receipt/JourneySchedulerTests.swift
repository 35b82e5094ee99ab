import Foundation
import Logging
import Shared
import Synchronization
import Testing

@testable import ReceiptWorker

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let instant: Mutex<Date>

    init(_ start: Date) { instant = Mutex(start) }

    var now: Date { instant.withLock { $0 } }

    func set(_ date: Date) { instant.withLock { $0 = date } }
}

/// The scheduler in this process (a manual clock where time must pass), with ReceiptWorker's journey steps; the
/// orders come through a ReceiptWorker process whose own scheduler is off.
@Suite(.serialized) struct JourneySchedulerTests {
    static let settings = #"""
        {"brand_story": "We grow tea on small farms. Since 1990.", "signature": "Mia, who founded us", "survey_url": "https://t.test/survey",
         "social_links": [{"name": "Instagram", "url": "https://instagram.com/t"}], "loyalty_programme": {"name": "Club", "url": "https://t.test/club"},
         "quiet_hours": null, "pressure": []}
        """#

    static func scheduler(
        _ fixture: PipelineFixture, clock: ManualClock, settings: String, batchSize: Int = 500, lease: Duration = .seconds(60), group: String? = nil
    ) throws
        -> (Scheduler, PostgresClient)
    {
        let directory = try StoreDirectory(json: Array(#"{"stores": {"\#(fixture.store)": \#(settings)}}"#.utf8), setting: "TEST")
        var topics = Topics()
        topics.emailCommands = fixture.commandsTopic
        topics.recommendationCommands = fixture.recommendationsTopic
        let postgres = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 2)
        let scheduler = Scheduler(
            postgres: postgres, producer: fixture.producer,
            pipeline: PipelineConfiguration(worker: "ReceiptWorker", groupID: group ?? fixture.group, inputTopic: fixture.inputTopic),
            handler: JourneySteps(stores: directory, topics: topics),
            clock: { clock.now }, batchSize: batchSize, lease: lease, logger: TestEnvironment.logger)
        return (scheduler, postgres)
    }

    /// Starts the worker with the store's settings and its own scheduler off.
    static func startWorker(_ fixture: PipelineFixture, settings: String) async throws {
        fixture.extraEnvironment = ["STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, settings), "SCHEDULER_ENABLED": "false"]
        try await fixture.startWorker()
    }

    static func steps(_ fixture: PipelineFixture) async throws -> [String] {
        try await fixture.query(
            "SELECT template, state, coalesce(reason, '') FROM rapport_scheduled_steps WHERE store_id = $1 ORDER BY due_at, template", [fixture.store]
        ).map { row in (0..<3).map { (try? row.decode(String.self, at: $0)) ?? "" }.joined(separator: " ") }
    }

    static func emails(_ fixture: PipelineFixture) async throws -> [[String: JSONValue]] {
        try await fixture.readToEnd(fixture.commandsTopic).compactMap { try? JSONValue.parse($0.value).objectValue }
    }

    /// Gives the address marketing consent, as CaptureWorker records it.
    static func consent(_ fixture: PipelineFixture, _ email: String, suppression: String? = nil) async throws {
        _ = try await fixture.query(
            """
            INSERT INTO rapport_contacts (store_id, email, transactional_ok, marketing_consent, consent_level, suppression)
            VALUES ($1, $2, true, $3, 'single', $4)
            ON CONFLICT (store_id, email) DO UPDATE SET marketing_consent = EXCLUDED.marketing_consent, suppression = EXCLUDED.suppression
            """, [fixture.store, email, suppression == nil, suppression])
    }

    @Test func aFirstOrderBeginsTheOrientationJourneyEachStepPersonalAndOnTime() async throws {
        try await TestEnvironment.withPipeline(4, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let events = ReceiptWorkerTests.Events(fixture: fixture)
            try await Self.startWorker(fixture, settings: Self.settings)
            try await Self.consent(fixture, "ana@example.com")
            // History first (stale, no journey): twelve customers bought A and then B.
            var messages: [KafkaOutboundMessage] = []
            for n in 0..<12 {
                messages.append(
                    events.order(
                        "h-a-\(n)", userID: "h-\(n)", email: "h\(n)@example.com", minutes: -400 * 24 * 60 + Double(n), lines: [.init(product: "A", price: 10)]))
                messages.append(
                    events.order(
                        "h-b-\(n)", userID: "h-\(n)", email: "h\(n)@example.com", minutes: -300 * 24 * 60 + Double(n), lines: [.init(product: "B", price: 10)]))
            }
            messages.append(events.order("o-1", lines: [.init(product: "A", price: 12.5, quantity: 2)]))
            try await fixture.publish(messages)
            try await CaptureWorkerTests.processed(fixture, messages.count)
            try await ReceiptWorkerTests.modelFolded(fixture)
            let placed = ReceiptWorkerTests.Events.base
            #expect(
                try await Self.steps(fixture) == [
                    "thank_you pending ", "survey_invite pending ", "why_we_exist pending ", "next_sale pending ", "walk_with_me pending ",
                ], "five steps for the first order, none for the history")
            let due = try await fixture.query("SELECT template, due_at FROM rapport_scheduled_steps WHERE store_id = $1", [fixture.store])
            let hours = Dictionary(
                uniqueKeysWithValues: try due.map {
                    (try $0.decode(String.self, at: 0) ?? "", ((try $0.decode(Date.self, at: 1) ?? placed).timeIntervalSince(placed) / 3600).rounded())
                })
            #expect(hours == ["thank_you": 2, "survey_invite": 72, "why_we_exist": 168, "next_sale": 504, "walk_with_me": 720], "the store's journey delays")

            let clock = ManualClock(placed)
            let (scheduler, postgres) = try Self.scheduler(fixture, clock: clock, settings: Self.settings)
            defer { postgres.close() }
            var seen = 1  // the receipt
            var sent: [String: [String: JSONValue]] = [:]
            for (template, hour) in [("thank_you", 2.0), ("survey_invite", 72), ("why_we_exist", 168), ("next_sale", 504), ("walk_with_me", 720)] {
                clock.set(placed.addingTimeInterval(hour * 3600 - 60))
                try await scheduler.tick()
                #expect(try await Self.emails(fixture).count == seen, "nothing before \(template) is due")
                clock.set(placed.addingTimeInterval(hour * 3600 + 1))
                try await scheduler.tick()
                let emails = try await Self.emails(fixture)
                #expect(emails.count == seen + 1, "\(template) sent when due, once")
                seen = emails.count
                if let last = emails.last { sent[last["template"]?.stringValue ?? ""] = last }
                #expect(emails.last?["template"] == .string(template))
            }
            let thanks = try #require(sent["thank_you"])
            #expect(thanks["category"] == .string("marketing") && thanks["unsubscribe_token"]?.stringValue?.isEmpty == false)
            #expect(thanks["data"]?["first_name"] == .string("Ana") && thanks["data"]?["signature"] == .string("Mia, who founded us"))
            #expect(thanks["data"]?["products"]?.arrayValue?.first?["product_id"] == .string("A"), "what they bought")
            #expect(thanks["causation_id"] == .string("m-o-1"))
            #expect(sent["survey_invite"]?["data"]?["survey_url"] == .string("https://t.test/survey"))
            #expect(sent["why_we_exist"]?["data"]?["brand_story"] == .string("We grow tea on small farms. Since 1990."))
            let next = sent["next_sale"]?["data"]?["recommendations"]?.arrayValue ?? []
            #expect(next.first?["product_id"] == .string("B") && next.first?["reason"] == .string("bought_next_by_others"), "computed at sending time")
            #expect(!next.contains { $0["product_id"] == .string("A") })
            let channels = sent["walk_with_me"]?["data"]?["channels"]?.arrayValue ?? []
            #expect(channels.compactMap { $0["kind"]?.stringValue } == ["social", "loyalty"])
            let recommendations = try await fixture.readToEnd(fixture.recommendationsTopic).compactMap { try? JSONValue.parse($0.value).objectValue }
            #expect(recommendations.filter { $0["context"] == .string("next_sale") }.count == 1, "a next_sale recommendation beside the email")
            #expect(try await Self.steps(fixture).allSatisfy { $0.hasSuffix("sent permitted") })

            // The shopper's timeline shows the order, the receipt, every step and every command.
            let migrate = try ChildProcess("CaptureWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrate.waitForExit() == 0)
            let explain = try ChildProcess(
                "CaptureWorker", ["explain", "--store", fixture.store, "--email", "ana@example.com"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await explain.waitForExit() == 0)
            #expect(explain.stdout.contains("order     o-1 completed: 1 items, total 25.00 EUR  [message m-o-1]"), "\(explain.stdout)")
            #expect(explain.stdout.contains("sent      receipt (transactional)"))
            for template in ["thank_you", "survey_invite", "why_we_exist", "next_sale", "walk_with_me"] {
                #expect(explain.stdout.contains("step      \(template) (orientation, order o-1): sent"))
                #expect(explain.stdout.contains("sent      \(template) (marketing)"))
            }
        }
    }

    /// One shopper across workers: a guest's order and the same person's later logged-in order (another device, the same
    /// address) resolve to one shared shopper — one journey, one purchase history — and CaptureWorker's `explain`, which
    /// finds the shopper through the same identities, shows both orders and the steps.
    @Test func aWorkerProcessSendsAFirstOrdersFiveEmailsThroughItsOwnScheduler() async throws {
        try await TestEnvironment.withPipeline(16, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            // The journey in seconds (3.6 s … 18 s), the worker's own scheduler looking every 100 ms, by the real clock.
            let settings = Self.settings.replacingOccurrences(
                of: #""quiet_hours": null"#,
                with:
                    #""quiet_hours": null, "journey": {"thank_you_hours": 0.001, "survey_invite_hours": 0.002, "why_we_exist_hours": 0.003, "next_sale_hours": 0.004, "walk_with_me_hours": 0.005}"#
            )
            fixture.extraEnvironment = ["STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, settings), "SCHEDULER_INTERVAL_MS": "100"]
            try await fixture.startWorker()
            try await Self.consent(fixture, "ana@example.com")
            let events = ReceiptWorkerTests.Events(fixture: fixture)
            // Ten days ago three customers bought B (history: the store's top sellers, no journey); then Ana's order,
            // placed now, whose steps fall due within the test.
            let history = (0..<3).map { n in
                events.order("h-\(n)", userID: "h-\(n)", email: "h\(n)@example.com", minutes: -10 * 24 * 60, lines: [.init(product: "B", price: 8)])
            }
            try await fixture.publish(history)
            try await ReceiptWorkerTests.modelFolded(fixture)
            let minutes = Date().timeIntervalSince(ReceiptWorkerTests.Events.base) / 60
            try await fixture.publish([events.order("o-1", minutes: minutes, lines: [.init(product: "A", price: 12.5, quantity: 2)])])
            try await eventually("all five steps decided", timeout: .seconds(60)) {
                try await fixture.query(
                    "SELECT count(*) FILTER (WHERE state = 'pending') = 0 AND count(*) = 5 FROM rapport_scheduled_steps WHERE store_id = $1", [fixture.store]
                ).first?.decode(Bool.self, at: 0) == true
            }
            try await fixture.waitUntilConsumed()
            #expect(
                try await Self.steps(fixture) == [
                    "thank_you sent permitted", "survey_invite sent permitted", "why_we_exist sent permitted", "next_sale sent permitted",
                    "walk_with_me sent permitted",
                ])
            let emails = try await Self.emails(fixture)
            let byTemplate = Dictionary(grouping: emails) { $0["template"]?.stringValue ?? "" }
            #expect(byTemplate.mapValues(\.count) == ["receipt": 1, "thank_you": 1, "survey_invite": 1, "why_we_exist": 1, "next_sale": 1, "walk_with_me": 1])
            for email in emails {
                #expect(email["to"]?["email"] == .string("ana@example.com") && email["causation_id"] == .string("m-o-1"))
            }
            #expect(byTemplate["thank_you"]?.first?["data"]?["products"]?.arrayValue?.first?["product_id"] == .string("A"))
            #expect(byTemplate["survey_invite"]?.first?["data"]?["survey_url"] == .string("https://t.test/survey"))
            #expect(byTemplate["why_we_exist"]?.first?["data"]?["brand_story"] == .string("We grow tea on small farms. Since 1990."))
            #expect(byTemplate["next_sale"]?.first?["data"]?["recommendations"]?.arrayValue?.first?["product_id"] == .string("B"))
            #expect(byTemplate["walk_with_me"]?.first?["data"]?["channels"]?.arrayValue?.isEmpty == false)
            #expect(
                byTemplate["thank_you"]?.first?["category"] == .string("marketing") && byTemplate["receipt"]?.first?["category"] == .string("transactional"))
        }
    }

    @Test func aGuestOrderAndALaterLoggedInOrderAreOneShopperWithOneJourney() async throws {
        try await TestEnvironment.withPipeline(11, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let events = ReceiptWorkerTests.Events(fixture: fixture)
            try await Self.startWorker(fixture, settings: Self.settings)
            try await Self.consent(fixture, "bo@example.com")
            try await fixture.publish([
                events.order("g-1", userID: nil, email: "Bo@Example.com", lines: [.init(product: "A", price: 10)])
            ])
            try await CaptureWorkerTests.processed(fixture, 1)
            try await fixture.publish([
                events.order("g-2", userID: "u-bo", email: "bo@example.com", minutes: 60, lines: [.init(product: "B", price: 10)])
            ])
            try await CaptureWorkerTests.processed(fixture, 2)
            let owners = try await fixture.query("SELECT DISTINCT shopper_id FROM receipt_orders WHERE store_id = $1", [fixture.store])
            #expect(owners.count == 1, "both orders belong to one shopper")
            let identities = try await fixture.query(
                "SELECT kind, value FROM rapport_identities WHERE store_id = $1 ORDER BY kind, value", [fixture.store]
            ).map { "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(String.self, at: 1) ?? "")" }
            #expect(identities == ["anonymous_id anon-guest", "anonymous_id anon-u-bo", "email bo@example.com", "user_id u-bo"])
            #expect(
                try await Self.steps(fixture) == [
                    "thank_you cancelled superseded_by_newer_order", "thank_you pending ", "survey_invite pending ", "why_we_exist pending ",
                    "next_sale pending ", "walk_with_me pending ",
                ], "one journey: the logged-in order is the guest's repeat order, whose thank-you takes the place of the first's, still waiting")
            let thanks = try await fixture.query(
                "SELECT data::text FROM rapport_scheduled_steps WHERE store_id = $1 AND template = 'thank_you' AND state = 'pending'", [fixture.store])
            let data = try #require(try thanks.first?.decode(String.self, at: 0))
            #expect(data.contains(#""product_id": "A""#) && data.contains(#""product_id": "B""#), "one thank-you naming what was bought in both: \(data)")
            #expect(data.contains(#""order_ids": ["g-2", "g-1"]"#), "\(data)")
            let nextSale = try await fixture.query(
                "SELECT due_at FROM rapport_scheduled_steps WHERE store_id = $1 AND template = 'next_sale'", [fixture.store]
            ).first
            let placed = ReceiptWorkerTests.Events.base.addingTimeInterval(3600)
            #expect(try nextSale?.decode(Date.self, at: 0) == placed.addingTimeInterval(504 * 3600), "the next sale follows the latest order")

            let migrate = try ChildProcess("CaptureWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrate.waitForExit() == 0)
            let explain = try ChildProcess(
                "CaptureWorker", ["explain", "--store", fixture.store, "--user-id", "u-bo"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await explain.waitForExit() == 0)
            for order in ["g-1", "g-2"] {
                #expect(explain.stdout.contains("order     \(order) completed: 1 items, total 10.00 EUR"), "\(explain.stdout)")
            }
            #expect(explain.stdout.contains("step      next_sale (orientation, order g-1): pending"), "\(explain.stdout)")
        }
    }

    @Test func aRefundEndsTheJourneyAndAnUnsubscribedShopperGetsTheReceiptButNoMarketing() async throws {
        try await TestEnvironment.withPipeline(5, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let events = ReceiptWorkerTests.Events(fixture: fixture)
            try await Self.startWorker(fixture, settings: Self.settings)
            try await Self.consent(fixture, "ana@example.com")
            try await Self.consent(fixture, "bo@example.com", suppression: "marketing")
            try await fixture.publish([
                events.order("r-1", lines: [.init(product: "A", price: 10)]),
                events.order("u-1", userID: "u-bo", email: "bo@example.com", lines: [.init(product: "A", price: 10)]),
            ])
            try await CaptureWorkerTests.processed(fixture, 2)
            #expect(try await Self.steps(fixture).count == 10, "two first orders, two journeys")
            try await fixture.publish([events.track("Order Refunded", id: "refund-1", userID: "u-1", minutes: 5, properties: ["order_id": .string("r-1")])])
            try await CaptureWorkerTests.processed(fixture, 3)
            let clock = ManualClock(ReceiptWorkerTests.Events.base.addingTimeInterval(800 * 3600))
            let (scheduler, postgres) = try Self.scheduler(fixture, clock: clock, settings: Self.settings)
            defer { postgres.close() }
            try await scheduler.tick()
            let emails = try await Self.emails(fixture)
            #expect(emails.map { $0["template"]?.stringValue ?? "" }.sorted() == ["receipt", "receipt"], "receipts only")
            let states = try await fixture.query(
                "SELECT order_id, state, reason FROM rapport_scheduled_steps WHERE store_id = $1", [fixture.store]
            ).map { "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(String.self, at: 1) ?? "") \(try $0.decode(String.self, at: 2) ?? "")" }
            #expect(states.count == 10)
            #expect(states.filter { $0.hasPrefix("r-1") }.allSatisfy { $0 == "r-1 cancelled order_refunded" })
            #expect(states.filter { $0.hasPrefix("u-1") }.allSatisfy { $0 == "u-1 suppressed unsubscribed" }, "\(states)")
        }
    }

    @Test func capsAndQuietHoursDeferStepsThatAreSentLaterAndNothingDeferredIsLost() async throws {
        try await TestEnvironment.withPipeline(6, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let migrate = try ChildProcess("ReceiptWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrate.waitForExit() == 0)
            let settings =
                #"{"pressure": [{"max": 1, "hours": 24}], "quiet_hours": {"start": "21:00", "end": "08:00"}, "time_zone": "UTC", "survey_url": "https://t.test/s", "brand_story": "Tea."}"#
            try await Self.consent(fixture, "cy@example.com")
            let day = Date(timeIntervalSince1970: 1_795_651_200)  // 2026-11-26T00:00:00Z
            let ten = day.addingTimeInterval(10 * 3600)
            let postgres = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 1)
            func step(_ template: String, at due: Date) -> ScheduledStep {
                ScheduledStep(
                    storeID: fixture.store, journey: "orientation", template: template, shopperKey: "\(fixture.store)/u-cy", email: "cy@example.com",
                    causationID: "m-c-1", orderID: nil, data: ["first_name": .string("Cy")], dueAt: due)
            }
            // Two due at 10:00 on day 1: the cap of one a day sends the thank-you and defers the survey invitation; a
            // third due at 23:00 on day 3 meets quiet hours.
            let planted = [
                step("thank_you", at: ten), step("survey_invite", at: ten), step("why_we_exist", at: day.addingTimeInterval(3 * 86_400 + 23 * 3600)),
            ]
            let group = fixture.group
            try await postgres.withTransaction { connection in try StepStore.schedule(planted, group: group, connection: connection) }
            postgres.close()
            let clock = ManualClock(ten)
            let (scheduler, client) = try Self.scheduler(fixture, clock: clock, settings: settings)
            defer { client.close() }
            try await scheduler.tick()
            #expect(try await Self.emails(fixture).map { $0["template"] } == [.string("thank_you")], "the higher priority wins the day's budget")
            let deferred = try await fixture.query(
                "SELECT state, reason, due_at FROM rapport_scheduled_steps WHERE store_id = $1 AND template = 'survey_invite'", [fixture.store]
            ).first
            #expect(try deferred?.decode(String.self, at: 0) == "pending" && deferred?.decode(String.self, at: 1) == "pressure_cap_1_per_24h")
            #expect(try deferred?.decode(Date.self, at: 2) == ten.addingTimeInterval(86_400), "due again when the window has room")
            clock.set(ten.addingTimeInterval(86_399))
            try await scheduler.tick()
            #expect(try await Self.emails(fixture).count == 1, "not before")
            clock.set(ten.addingTimeInterval(86_400))
            try await scheduler.tick()
            #expect(try await Self.emails(fixture).map { $0["template"] } == [.string("thank_you"), .string("survey_invite")])
            clock.set(day.addingTimeInterval(3 * 86_400 + 23 * 3600))
            try await scheduler.tick()
            let quiet = try await fixture.query(
                "SELECT reason, due_at FROM rapport_scheduled_steps WHERE store_id = $1 AND template = 'why_we_exist'", [fixture.store]
            ).first
            #expect(try quiet?.decode(String.self, at: 0) == "quiet_hours")
            #expect(try quiet?.decode(Date.self, at: 1) == day.addingTimeInterval(4 * 86_400 + 8 * 3600), "08:00 the next morning")
            clock.set(day.addingTimeInterval(4 * 86_400 + 8 * 3600))
            try await scheduler.tick()
            #expect(try await Self.emails(fixture).map { $0["template"] } == [.string("thank_you"), .string("survey_invite"), .string("why_we_exist")])
            let decisions = try await fixture.query(
                "SELECT template, decision FROM rapport_contact_decisions WHERE store_id = $1 ORDER BY id", [fixture.store]
            ).map { "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(String.self, at: 1) ?? "")" }
            #expect(decisions == ["thank_you sent", "survey_invite deferred", "survey_invite sent", "why_we_exist deferred", "why_we_exist sent"])
        }
    }

    @Test func aWorkerProcessDefersScheduledMarketingByPriorityUnderTheCapsAndInQuietHours() async throws {
        try await TestEnvironment.withPipeline(9, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            // Two stores: one capping marketing at one a day, one whose quiet hours (UTC, whole minutes) hold now.
            let now = Date()
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = .gmt
            func clock(_ date: Date) -> String {
                let parts = calendar.dateComponents([.hour, .minute], from: date)
                return String(format: "%02d:%02d", parts.hour ?? 0, parts.minute ?? 0)
            }
            let quietEnd = now.addingTimeInterval(3600)
            let (capped, quiet) = (fixture.store, fixture.store + "-quiet")
            let settings = #"""
                {"stores": {"\#(capped)": {"pressure": [{"max": 1, "hours": 24}], "quiet_hours": null, "survey_url": "https://t.test/s"},
                            "\#(quiet)": {"quiet_hours": {"start": "\#(clock(now.addingTimeInterval(-3600)))", "end": "\#(clock(quietEnd))"}, "time_zone": "UTC"}}}
                """#
            let file = TestEnvironment.runDirectory.appendingPathComponent(TestEnvironment.unique("settings") + ".json")
            try Data(settings.utf8).write(to: file)
            let migrate = try ChildProcess("ReceiptWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrate.waitForExit() == 0)
            for email in ["dee@example.com", "eve@example.com"] { try await Self.consent(fixture, email) }
            _ = try await fixture.query(
                "INSERT INTO rapport_contacts (store_id, email, transactional_ok, marketing_consent, consent_level) VALUES ($1, 'fay@example.com', true, true, 'single')",
                [quiet])
            let postgres = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 1)
            func step(_ store: String, _ template: String, _ email: String) -> ScheduledStep {
                ScheduledStep(
                    storeID: store, journey: "orientation", template: template, shopperKey: "\(store)/\(email)", email: email,
                    causationID: "m-\(email)", orderID: nil, data: [:], dueAt: now.addingTimeInterval(-60))
            }
            // Dee: two steps due at once. Eve: one, with a marketing email sent an hour ago (her cap is full). Fay: one,
            // in her store's quiet hours.
            let planted = [
                step(capped, "survey_invite", "dee@example.com"), step(capped, "thank_you", "dee@example.com"), step(capped, "why_we_exist", "eve@example.com"),
                step(quiet, "why_we_exist", "fay@example.com"),
            ]
            let group = fixture.group
            try await postgres.withTransaction { connection in
                try StepStore.schedule(planted, group: group, connection: connection)
                try connection.execute(
                    """
                    INSERT INTO rapport_contact_decisions (store_id, contact_id, subject, worker, template, category, decision, reason, causation_id, decided_at)
                    SELECT store_id, contact_id, 'earlier', 'CaptureWorker', 'welcome_offer', 'marketing', 'sent', 'permitted', 'c-0', now() - interval '1 hour'
                    FROM rapport_contacts WHERE store_id = $1 AND email = 'eve@example.com'
                    """, [capped])
            }
            postgres.close()
            fixture.extraEnvironment = ["STORE_SETTINGS_FILE": file.path, "SCHEDULER_INTERVAL_MS": "100"]
            try await fixture.startWorker()
            // The worker's own scheduler decides them, by the real clock: wait until every step has been decided.
            let deadline = ContinuousClock.now + .seconds(30)
            while try await fixture.query("SELECT 1 FROM rapport_scheduled_steps WHERE state = 'pending' AND attempts = 0").count > 0 {
                guard ContinuousClock.now < deadline else { throw TestFailure("the worker's scheduler decided nothing") }
                try await Task.sleep(for: .milliseconds(100))
            }
            let rows = try await fixture.query("SELECT email, template, state, reason, due_at FROM rapport_scheduled_steps")
            let outcome = Dictionary(
                uniqueKeysWithValues: try rows.map { row in
                    (
                        "\(try row.decode(String.self, at: 0) ?? "") \(try row.decode(String.self, at: 1) ?? "")",
                        (
                            "\(try row.decode(String.self, at: 2) ?? "") \(try row.decode(String.self, at: 3) ?? "")",
                            try row.decode(Date.self, at: 4) ?? .distantPast
                        )
                    )
                })
            #expect(outcome["dee@example.com thank_you"]?.0 == "sent permitted", "the higher priority wins the day's budget")
            #expect(outcome["dee@example.com survey_invite"]?.0 == "pending pressure_cap_1_per_24h")
            #expect(
                abs((outcome["dee@example.com survey_invite"]?.1 ?? .distantPast).timeIntervalSince(now.addingTimeInterval(86_400))) < 120,
                "due again when the thank-you leaves the window")
            #expect(outcome["eve@example.com why_we_exist"]?.0 == "pending pressure_cap_1_per_24h")
            #expect(
                abs((outcome["eve@example.com why_we_exist"]?.1 ?? .distantPast).timeIntervalSince(now.addingTimeInterval(23 * 3600))) < 120,
                "due again when the earlier send leaves the window")
            #expect(outcome["fay@example.com why_we_exist"]?.0 == "pending quiet_hours")
            #expect(abs((outcome["fay@example.com why_we_exist"]?.1 ?? .distantPast).timeIntervalSince(quietEnd)) < 61, "deferred to the end of quiet hours")
            // What was sent is on the wire once the scheduler's outbox rows are published and deleted.
            try await fixture.waitUntilConsumed()
            let emails = try await Self.emails(fixture)
            #expect(emails.map { "\($0["to"]?["email"]?.stringValue ?? "") \($0["template"]?.stringValue ?? "")" } == ["dee@example.com thank_you"])

            // The deferred steps are sent later, once the budget and the quiet hours allow: here the caps and the quiet
            // hours lifted from the settings and the steps' new due times brought to now (instead of waiting a day).
            fixture.workers.first?.send(SIGTERM)
            #expect(try await fixture.workers.first?.waitForExit() == 0)
            try Data(#"{"unknown_stores": "defaults", "defaults": {"pressure": [], "quiet_hours": null, "survey_url": "https://t.test/s"}}"#.utf8).write(
                to: file)
            let deferred = try await fixture.query(
                "UPDATE rapport_scheduled_steps SET due_at = now() - interval '1 minute' WHERE state = 'pending' AND attempts > 0 RETURNING step_id")
            #expect(deferred.count == 3)
            try await fixture.startWorker()
            let later = ContinuousClock.now + .seconds(30)
            while try await fixture.query("SELECT 1 FROM rapport_scheduled_steps WHERE state = 'pending'").count > 0 {
                guard ContinuousClock.now < later else { throw TestFailure("the deferred steps were not sent") }
                try await Task.sleep(for: .milliseconds(100))
            }
            try await fixture.waitUntilConsumed()
            let all = try await Self.emails(fixture).map { "\($0["to"]?["email"]?.stringValue ?? "") \($0["template"]?.stringValue ?? "")" }.sorted()
            #expect(
                all == ["dee@example.com survey_invite", "dee@example.com thank_you", "eve@example.com why_we_exist", "fay@example.com why_we_exist"],
                "every deferred step sent once, nothing lost")
        }
    }

    /// `count` due thank-you steps, each for its own consenting contact, with no caps.
    static func plantSteps(_ fixture: PipelineFixture, count: Int, due: Date) async throws {
        let migrate = try ChildProcess("ReceiptWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
        #expect(try await migrate.waitForExit() == 0)
        _ = try await fixture.query(
            """
            INSERT INTO rapport_contacts (store_id, email, transactional_ok, marketing_consent, consent_level)
            SELECT $1, 'shopper-' || n || '@example.com', true, true, 'single' FROM generate_series(1, $2::int) AS n
            """, [fixture.store, count])
        let postgres = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 1)
        defer { postgres.close() }
        let store = fixture.store
        let steps = (1...count).map { n in
            ScheduledStep(
                storeID: store, journey: "orientation", template: "thank_you", shopperKey: "\(store)/s-\(n)", email: "shopper-\(n)@example.com",
                causationID: "m-\(n)", orderID: nil, data: [:], dueAt: due)
        }
        try await postgres.withTransaction { try StepStore.schedule(steps, group: fixture.group, connection: $0) }
    }

    @Test func twoSchedulerReplicasRacingEmitEachStepExactlyOnce() async throws {
        try await TestEnvironment.withPipeline(7, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let due = ReceiptWorkerTests.Events.base
            try await Self.plantSteps(fixture, count: 400, due: due)
            let clock = ManualClock(due.addingTimeInterval(60))
            let settings = #"{"pressure": [], "quiet_hours": null}"#
            let (first, one) = try Self.scheduler(fixture, clock: clock, settings: settings, batchSize: 25)
            let (second, two) = try Self.scheduler(fixture, clock: clock, settings: settings, batchSize: 25)
            defer {
                one.close()
                two.close()
            }
            async let a: Void = { while try await first.tick() {} }()
            async let b: Void = { while try await second.tick() {} }()
            _ = try await (a, b)
            let emails = try await Self.emails(fixture)
            #expect(emails.count == 400, "every step once on the wire")
            #expect(Set(emails.compactMap { $0["command_id"]?.stringValue }).count == 400)
            let unsent = try await fixture.query("SELECT count(*) FROM rapport_scheduled_steps WHERE store_id = $1 AND state <> 'sent'", [fixture.store])
            #expect(try unsent.first?.decode(Int.self, at: 0) == 0)
            let sent = try await fixture.query("SELECT count(*) FROM rapport_contact_decisions WHERE store_id = $1 AND decision = 'sent'", [fixture.store])
            #expect(try sent.first?.decode(Int.self, at: 0) == 400, "one decision per step")
        }
    }

    @Test func aCrashBetweenClaimAndPublishLosesNothingAndDoublesNothing() async throws {
        try await TestEnvironment.withPipeline(8, executable: "ReceiptWorker", prefix: "it-rcpt") { fixture in
            let due = ReceiptWorkerTests.Events.base
            try await Self.plantSteps(fixture, count: 30, due: due)
            let clock = ManualClock(due.addingTimeInterval(60))
            let settings = #"{"pressure": [], "quiet_hours": null}"#
            // The first replica claims, decides and commits — and "crashes" before it publishes.
            let (crashing, one) = try Self.scheduler(fixture, clock: clock, settings: settings, lease: .seconds(1))
            defer { one.close() }
            let (claimed, rows) = try await crashing.emitDue()
            #expect(claimed == 30 && rows.count == 30)
            #expect(try await Self.emails(fixture).isEmpty, "nothing published yet")
            // Another replica: nothing is due any more, and once the lease has run out it relays the 30 commands.
            let (survivor, two) = try Self.scheduler(fixture, clock: clock, settings: settings, lease: .seconds(1))
            defer { two.close() }
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                try await survivor.tick()
                let left = try await fixture.query("SELECT count(*) FROM rapport_outbox WHERE group_id = $1", [fixture.group])
                if try left.first?.decode(Int.self, at: 0) == 0 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            let emails = try await Self.emails(fixture)
            #expect(emails.count == 30, "every command once")
            let expected = try await fixture.query("SELECT command_id FROM rapport_scheduled_steps WHERE store_id = $1", [fixture.store])
            #expect(Set(emails.compactMap { $0["command_id"]?.stringValue }) == Set(try expected.compactMap { try $0.decode(String.self, at: 0) }))
            #expect(
                try await fixture.query("SELECT 1 FROM rapport_scheduled_steps WHERE store_id = $1 AND state <> 'sent'", [fixture.store]).count == 0,
                "the survivor claimed nothing again")
        }
    }
}
