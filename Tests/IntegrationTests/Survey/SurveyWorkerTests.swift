import Foundation
import InboundEvents
import Shared
import Testing

@testable import ReceiptWorker
@testable import SurveyWorker

/// SurveyWorker end to end: the worker as its own process, real PostgreSQL, the embedded Kafka; where orders matter, a
/// ReceiptWorker process records them from its own topic into the same database, as in production.
@Suite(.serialized) struct SurveyWorkerTests {
    /// Builds `survey-events` messages (and, through ``ReceiptWorkerTests/Events``, orders) for one fixture's store.
    struct Events {
        let fixture: PipelineFixture
        var orders: ReceiptWorkerTests.Events { ReceiptWorkerTests.Events(fixture: fixture) }
        /// The topic the fixture's ReceiptWorker reads.
        var ordersTopic: String { fixture.inputTopic + "-orders" }

        func survey(
            _ id: String, userID: String?, email: String? = nil, minutes: Double = 0, surveyID: JSONValue? = .string("onboarding"),
            answers: JSONValue?
        ) -> KafkaOutboundMessage {
            var properties: [String: JSONValue] = [:]
            if let surveyID { properties["survey_id"] = surveyID }
            if let answers { properties["answers"] = answers }
            if let email { properties["email"] = .string(email) }
            return orders.track("Survey Submitted", id: id, userID: userID, minutes: minutes, properties: properties)
        }

        /// An order on the ReceiptWorker's topic, `days` from now (negative: in the past).
        func order(_ orderID: String, userID: String, email: String, days: Double, product: String = "A", category: String = "tea", price: Double = 20)
            -> KafkaOutboundMessage
        {
            var message = orders.order(
                orderID, userID: userID, email: email, minutes: days * 24 * 60 + 120, lines: [.init(product: product, price: price, category: category)])
            message.topic = ordersTopic
            return message
        }
    }

    /// Starts a ReceiptWorker beside the fixture's worker: same database and store settings, its own group and topic.
    static func startReceiptWorker(_ fixture: PipelineFixture) async throws {
        var environment = [
            "DATABASE_URL": fixture.databaseURL, "CHECKOUT_EVENTS_TOPIC": fixture.inputTopic + "-orders", "EMAIL_COMMANDS_TOPIC": fixture.commandsTopic,
            "RECOMMENDATION_COMMANDS_TOPIC": fixture.recommendationsTopic, "KAFKA_GROUP_ID": fixture.group + "-receipt", "HTTP_PORT": "0",
            "KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "LOG_FORMAT": "json", "BATCH_WAIT_MS": "50",
            "MODEL_FOLD_INTERVAL_MS": "100", "TOP_SELLERS_REFRESH_SECONDS": "0", "SCHEDULER_ENABLED": "false",
        ]
        if let settings = fixture.extraEnvironment["STORE_SETTINGS_FILE"] { environment["STORE_SETTINGS_FILE"] = settings }
        let worker = try ChildProcess("ReceiptWorker", [], environment: environment)
        fixture.workers.append(worker)
        _ = try await worker.probePort()
    }

    /// Waits until the ReceiptWorker has applied `count` orders of the store and folded its model.
    static func ordersApplied(_ fixture: PipelineFixture, _ count: Int) async throws {
        try await eventually("the ReceiptWorker applied \(count) messages", timeout: .seconds(90)) {
            let rows = try await fixture.query(
                "SELECT count(*) FROM rapport_processed_messages WHERE group_id = $1 AND store_id = $2", [fixture.group + "-receipt", fixture.store])
            return try rows.first?.decode(Int.self, at: 0) == count
        }
        try await ReceiptWorkerTests.modelFolded(fixture)
    }

    /// Waits until the SurveyWorker has read everything published to it and checks it applied `count` messages (the
    /// store's processed messages are the ReceiptWorker's too: counted by group).
    static func surveysApplied(_ fixture: PipelineFixture, _ count: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await fixture.waitUntilConsumed()
        let rows = try await fixture.query(
            "SELECT count(*) FROM rapport_processed_messages WHERE group_id = $1 AND store_id = $2", [fixture.group, fixture.store])
        #expect(try rows.first?.decode(Int.self, at: 0) == count, "messages applied", sourceLocation: sourceLocation)
    }

    /// `CaptureWorker explain` (its tables migrated first) for one shopper of the fixture's store.
    static func explain(_ fixture: PipelineFixture, _ shopper: [String]) async throws -> String {
        let migrate = try ChildProcess("CaptureWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
        #expect(try await migrate.waitForExit() == 0)
        let explain = try ChildProcess("CaptureWorker", ["explain", "--store", fixture.store] + shopper, environment: ["DATABASE_URL": fixture.databaseURL])
        #expect(try await explain.waitForExit() == 0, "\(explain.stderr)")
        return explain.stdout
    }

    static func deadLetterReasons(_ fixture: PipelineFixture) async throws -> [String] {
        try await fixture.readToEnd(fixture.deadLetterTopic).map { message in
            message.headers.first { $0.key == "dlq.message" }.map { String(decoding: $0.value ?? [], as: UTF8.self) } ?? ""
        }
    }

    /// Each win-back step's state and reason (`"sent permitted"`), by the customer's userId.
    static func winBackOutcomes(_ fixture: PipelineFixture) async throws -> [String: String] {
        let steps = try await fixture.query(
            """
            SELECT i.value, s.state, s.reason FROM rapport_scheduled_steps s
            JOIN rapport_identities i ON i.store_id = s.store_id AND i.shopper_id = s.shopper_id AND i.kind = 'user_id'
            WHERE s.store_id = $1 AND s.template = 'win_back'
            """, [fixture.store])
        var outcome: [String: String] = [:]
        for row in steps {
            outcome[try row.decode(String.self, at: 0) ?? ""] = "\(try row.decode(String.self, at: 1) ?? "") \(try row.decode(String.self, at: 2) ?? "")"
        }
        return outcome
    }

    static func shopperID(_ fixture: PipelineFixture, userID: String) async throws -> Int64? {
        try await fixture.query(
            "SELECT shopper_id FROM rapport_identities WHERE store_id = $1 AND kind = 'user_id' AND value = $2", [fixture.store, userID]
        ).first?.decode(Int64.self, at: 0)
    }

    @Test func responsesAreKeptAsGivenTheProfileMergesKeyByKeyBadPayloadsAreDeadLetteredAndErasureReachesEveryAnswer() async throws {
        try await TestEnvironment.withPipeline(1, executable: "SurveyWorker", prefix: "it-srv") { fixture in
            let events = Events(fixture: fixture)
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, #"{"survey_acknowledgement": true, "quiet_hours": null}"#),
                "SCHEDULER_ENABLED": "false", "CHURN_RESCORE_SECONDS": "3600",
            ]
            try await fixture.startWorker()
            try await JourneySchedulerTests.consent(fixture, "ana@example.com")
            let first: JSONValue = .object([
                "interests": .array([.string("tea")]), "habits": .object(["brews": .string("daily"), "time": .string("morning")]),
                "income_band": .string("50-75k"), "channels": .array([.string("instagram")]), "favourite": .string("Sencha, on Sundays with my mother"),
            ])
            let survey = events.survey("s-1", userID: "u-1", email: "ana@example.com", answers: first)
            try await fixture.publish([
                survey, survey,  // published twice: one response
                events.survey(
                    "s-2", userID: "u-1", minutes: 1,
                    answers: .object([
                        "habits": .object(["time": .string("evening")]), "interests": .array([.string("pots"), .string("cups")]), "mood": .string("calm"),
                    ])),
                // An older survey arriving late overrides nothing newer.
                events.survey(
                    "s-0", userID: "u-1", minutes: -10, answers: .object(["interests": .array([.string("coffee")]), "income_band": .string("25-50k")])),
                // A survey before any order, from a shopper never seen: the shopper is created.
                events.survey("s-new", userID: "u-new", minutes: 2, answers: .object(["channels": .array([])])),
                // A survey imported from a year ago: it shapes the profile and says nothing.
                events.survey(
                    "s-old", userID: "u-old", email: "old@example.com", minutes: -365 * 24 * 60, answers: .object(["interests": .array([.string("tea")])])),
                events.orders.track("Survey Viewed", id: "noise", userID: "u-1", minutes: 3, properties: [:]),
                events.survey("bad-1", userID: "u-1", minutes: 4, answers: .string("yes")),
                events.survey("bad-2", userID: "u-1", minutes: 4, answers: .object(["interests": .array([.number(1)])])),
                events.survey("bad-3", userID: "u-1", minutes: 4, answers: .object(["habits": .object(["time": .number(7)])])),
                events.survey("bad-4", userID: "u-1", minutes: 4, surveyID: nil, answers: .object([:])),
                events.survey("bad-5", userID: "u-1", minutes: 4, answers: .object(["income_band": .array([])])),
            ])
            try await CaptureWorkerTests.processed(fixture, 6)
            let reasons = try await Self.deadLetterReasons(fixture)
            #expect(reasons.count == 5, "\(reasons)")
            for expected in [
                "properties.answers must be an object, not a string", "properties.answers.interests[0] must be a string, not a number",
                "properties.answers.habits.time must be a string, not a number", "properties.survey_id is required",
                "properties.answers.income_band must be a string, not an array",
            ] {
                #expect(reasons.contains { $0.contains(expected) }, "dead letter naming the field: \(expected) in \(reasons)")
            }

            let stored = try await fixture.query(
                "SELECT message_id, answers::text FROM survey_responses WHERE store_id = $1 ORDER BY submitted_at", [fixture.store])
            #expect(try stored.map { try $0.decode(String.self, at: 0) ?? "" } == ["s-old", "s-0", "s-1", "s-2", "s-new"], "one row per submission, once")
            let answers = try stored.map { try $0.decode(String.self, at: 1) ?? "" }
            let kept = try JSONValue.parse(Array((answers.count > 2 ? answers[2] : "").utf8)[...])
            #expect(kept == first, "the answers exactly as given, free text included")

            let ana = try #require(try await Self.shopperID(fixture, userID: "u-1"))
            let profile = try #require(
                try await fixture.query(
                    """
                    SELECT to_json(interests)::text, habits::text, income_band, to_json(channels)::text, other::text, responses
                    FROM survey_profiles WHERE store_id = $1 AND shopper_id = $2
                    """, [fixture.store, ana]
                ).first)
            func json(_ index: Int) throws -> JSONValue { try JSONValue.parse(Array((try profile.decode(String.self, at: index) ?? "null").utf8)[...]) }
            #expect(try json(0) == .array([.string("pots"), .string("cups")]), "the latest interests")
            #expect(try json(1) == .object(["brews": .string("daily"), "time": .string("evening")]), "habits merged key by key")
            #expect(try profile.decode(String.self, at: 2) == "50-75k", "an answer no later survey gave stands; the older late one overrides nothing")
            #expect(try json(3) == .array([.string("instagram")]))
            #expect(try json(4) == .object(["favourite": .string("Sencha, on Sundays with my mother"), "mood": .string("calm")]), "unknown keys kept")
            #expect(try profile.decode(Int.self, at: 5) == 3)
            let preferences = try await fixture.query(
                "SELECT to_json(interests)::text, to_json(channels)::text FROM rapport_shopper_preferences WHERE store_id = $1 AND shopper_id = $2",
                [fixture.store, ana])
            #expect(
                try preferences.first?.decode(String.self, at: 0) == #"["pots","cups"]"# && preferences.first?.decode(String.self, at: 1) == #"["instagram"]"#)
            let newcomer = try #require(try await Self.shopperID(fixture, userID: "u-new"), "a survey from a shopper never seen creates the shopper")
            let chose = try await fixture.query(
                "SELECT to_json(channels)::text FROM rapport_shopper_preferences WHERE store_id = $1 AND shopper_id = $2", [fixture.store, newcomer])
            #expect(try chose.first?.decode(String.self, at: 0) == "[]", "chose none: not the same as not saying")

            // The acknowledgement (the store enables it) for each recent survey with an address; none without.
            let emails = try await ReceiptWorkerTests.commands(fixture, fixture.commandsTopic)
            #expect(emails.allSatisfy { $0["template"] == .string("survey_acknowledgement") && $0["to"]?["email"] == .string("ana@example.com") })
            #expect(emails.compactMap { $0["causation_id"]?.stringValue }.sorted() == ["s-0", "s-1", "s-2"], "to her known address when the survey gives none")
            let decisions = try await ReceiptWorkerTests.decisions(fixture)
            #expect(decisions.contains("survey:onboarding survey_acknowledgement dropped no_address"), "\(decisions)")
            #expect(decisions.contains("survey:onboarding recommend:post_survey dropped stale_event"), "history is not a conversation")
            #expect(decisions.contains("survey:onboarding survey_acknowledgement dropped stale_event"))
            let old = try #require(try await Self.shopperID(fixture, userID: "u-old"))
            let oldProfile = try await fixture.query(
                "SELECT to_json(interests)::text FROM survey_profiles WHERE store_id = $1 AND shopper_id = $2", [fixture.store, old])
            #expect(try oldProfile.first?.decode(String.self, at: 0) == #"["tea"]"#, "but it changes state")
            #expect(decisions.contains("survey:onboarding recommend:post_survey dropped no_purchase_model"), "without ReceiptWorker's tables, nothing to say")

            // Erasure (CaptureWorker's Erasure Requested calls the dispatcher): every answer, the profile and the
            // preferences go.
            let contact = try #require(
                try await fixture.query("SELECT contact_id FROM rapport_contacts WHERE store_id = $1 AND email = 'ana@example.com'", [fixture.store]).first?
                    .decode(Int64.self, at: 0))
            _ = try await fixture.query("SELECT rapport_erase_contact($1, $2, $3)", [fixture.store, contact, PostgresArray(["\(fixture.store)/u-1"])])
            for table in ["survey_responses", "survey_profiles", "rapport_shopper_preferences"] {
                let left = try await fixture.query(
                    "SELECT count(*) FROM \(table) t WHERE t.store_id = $1 AND (t::text ILIKE '%sencha%' OR t.shopper_id = $2)", [fixture.store, ana])
                #expect(try left.first?.decode(Int.self, at: 0) == 0, "\(table) keeps nothing of the erased shopper")
            }
            let others = try await fixture.query("SELECT count(*) FROM survey_responses WHERE store_id = $1", [fixture.store])
            #expect(try others.first?.decode(Int.self, at: 0) == 2, "the other shoppers' answers stay")
        }
    }

    static let channelSettings = #"""
        {"quiet_hours": null, "pressure": [],
         "social_links": [{"name": "Instagram", "url": "https://instagram.com/t"}, {"name": "Facebook", "url": "https://facebook.com/t"}],
         "event_links": [{"name": "Tasting evening", "url": "https://t.test/tasting"}], "loyalty_programme": {"name": "Club", "url": "https://t.test/club"}}
        """#

    @Test func postSurveyRecommendationsFollowStatedInterestsAndTheWalkWithMeFitsTheChannelsChosen() async throws {
        try await TestEnvironment.withPipeline(2, executable: "SurveyWorker", prefix: "it-srv") { fixture in
            let events = Events(fixture: fixture)
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, Self.channelSettings), "SCHEDULER_ENABLED": "false",
                "CHURN_RESCORE_SECONDS": "3600",
            ]
            try await Self.startReceiptWorker(fixture)
            try await fixture.startWorker()
            try await JourneySchedulerTests.consent(fixture, "ana@example.com")
            // History: forty customers bought the popular X, a few bought the pots P1 and P2; nobody bought a pot after tea.
            var orders: [KafkaOutboundMessage] = []
            for n in 0..<40 {
                orders.append(events.order("x-\(n)", userID: "h-\(n)", email: "h\(n)@example.com", days: -10 - Double(n % 5), product: "X", category: "misc"))
            }
            for n in 0..<6 {
                orders.append(events.order("p-\(n)", userID: "p-\(n)", email: "p\(n)@example.com", days: -12, product: n < 4 ? "P1" : "P2", category: "pots"))
            }
            // Ana's and Bo's first orders, now: a journey each.
            orders.append(events.order("ana-1", userID: "u-1", email: "ana@example.com", days: 0, product: "T1", category: "tea"))
            orders.append(events.order("bo-1", userID: "u-2", email: "bo@example.com", days: 0, product: "T1", category: "tea"))
            try await fixture.publish(orders)
            try await Self.ordersApplied(fixture, orders.count)
            #expect(
                try await JourneySchedulerTests.steps(fixture).filter { $0.hasPrefix("walk_with_me") } == ["walk_with_me pending ", "walk_with_me pending "])

            try await fixture.publish([
                events.survey(
                    "s-ana", userID: "u-1", email: "ana@example.com", minutes: 130,
                    answers: .object([
                        "interests": .array([.string("pots")]), "channels": .array([.string("instagram"), .string("loyalty")]),
                    ])),
                // Webinars: the store has none. Bo chose no channel the walk-with-me could invite to.
                events.survey("s-bo", userID: "u-2", minutes: 131, answers: .object(["channels": .array([.string("webinars")])])),
            ])
            try await Self.surveysApplied(fixture, 2)
            let recommendations = try await ReceiptWorkerTests.commands(fixture, fixture.recommendationsTopic).filter {
                $0["context"] == .string("post_survey")
            }
            let forAna = try #require(recommendations.first { $0["causation_id"] == .string("s-ana") })
            let products = forAna["products"]?.arrayValue ?? []
            let ids = products.compactMap { $0["product_id"]?.stringValue }
            #expect(Array(ids.prefix(2)) == ["P1", "P2"], "her stated interest first, above the merely popular X: \(ids)")
            #expect(products.prefix(2).allSatisfy { $0["reason"] == .string("matches_interests") })
            #expect(ids.contains("X") && !ids.contains("T1"), "never what she bought")
            #expect(forAna["shopper"]?["email"] == .string("ana@example.com"))
            let forBo = try #require(recommendations.first { $0["causation_id"] == .string("s-bo") })
            #expect(forBo["products"]?.arrayValue?.first?["product_id"] == .string("X"), "no interests stated: the store's top sellers")

            let bo = try #require(try await Self.shopperID(fixture, userID: "u-2"))
            let boWalk = try await fixture.query(
                "SELECT state, reason FROM rapport_scheduled_steps WHERE store_id = $1 AND shopper_id = $2 AND template = 'walk_with_me'", [fixture.store, bo])
            #expect(try boWalk.first?.decode(String.self, at: 0) == "dropped" && boWalk.first?.decode(String.self, at: 1) == "no_chosen_channels")

            // Ana's walk-with-me, when due, invites to what she chose: Instagram and the club, not Facebook or the tasting.
            let clock = ManualClock(ReceiptWorkerTests.Events.base.addingTimeInterval(721 * 3600 + 120 * 60))
            let (scheduler, postgres) = try JourneySchedulerTests.scheduler(
                fixture, clock: clock, settings: Self.channelSettings, group: fixture.group + "-receipt")
            defer { postgres.close() }
            try await scheduler.tick()
            let walk = try #require(try await JourneySchedulerTests.emails(fixture).first { $0["template"] == .string("walk_with_me") })
            let channels = walk["data"]?["channels"]?.arrayValue ?? []
            #expect(channels.compactMap { $0["name"]?.stringValue } == ["Instagram", "Club"], "\(channels)")
            #expect(walk["to"]?["email"] == .string("ana@example.com"))

            // Her timeline shows the profile and the survey.
            let explained = try await Self.explain(fixture, ["--email", "ana@example.com"])
            #expect(explained.contains("profile (1 surveys): interests pots; channels instagram, loyalty"), "\(explained)")
            #expect(explained.contains("survey    onboarding answered  [message s-ana]"))
            #expect(explained.contains("step      walk_with_me (orientation, order ana-1): sent"))
        }
    }

    static let winBackSettings = #"{"quiet_hours": null, "pressure": [], "win_back": {"band": "high", "offer_code": "COMEBACK"}}"#

    /// Constructed histories, as ReceiptWorker records them from an import (every order older than 72 hours: no receipt,
    /// no journey) and the orders that follow.
    @Test func churnRiskRanksConstructedHistoriesAndAWinBackGoesOncePerLapseCancelledByAnOrderSuppressedWithoutConsent() async throws {
        try await TestEnvironment.withPipeline(3, executable: "SurveyWorker", prefix: "it-srv") { fixture in
            let events = Events(fixture: fixture)
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, Self.winBackSettings), "SCHEDULER_ENABLED": "false",
                "CHURN_RESCORE_SECONDS": "1",
            ]
            try await Self.startReceiptWorker(fixture)
            var orders: [KafkaOutboundMessage] = []
            // Twenty customers who came back after 30 days, long ago: the store's median first→second gap is 30 days.
            for n in 0..<20 {
                orders.append(events.order("b-\(n)-1", userID: "b-\(n)", email: "b\(n)@example.com", days: -200, product: "B"))
                orders.append(events.order("b-\(n)-2", userID: "b-\(n)", email: "b\(n)@example.com", days: -170, product: "C"))
            }
            // A regular who bought every 10 days and stopped 240 days ago: well past their usual gap.
            for (k, day) in [-260.0, -250, -240].enumerated() { orders.append(events.order("r-\(k)", userID: "u-r", email: "r@example.com", days: day)) }
            // A steady customer, last seen 5 days ago; a refunded order of theirs does not count.
            for (k, day) in [-90.0, -60, -30, -5, -2].enumerated() { orders.append(events.order("s-\(k)", userID: "u-s", email: "s@example.com", days: day)) }
            // A brand-new customer.
            orders.append(events.order("n-0", userID: "u-n", email: "n@example.com", days: -1))
            // Three one-time customers whose expected return (30 days) passed a day ago: each begins to slip away now.
            for name in ["w", "v", "x"] { orders.append(events.order("\(name)-0", userID: "u-\(name)", email: "\(name)@example.com", days: -31)) }
            var refund = events.orders.track("Order Refunded", id: "refund-s-4", userID: "u-s", minutes: -24 * 60, properties: ["order_id": .string("s-4")])
            refund.topic = events.ordersTopic
            orders.append(refund)
            try await fixture.publish(orders)
            try await Self.ordersApplied(fixture, orders.count)
            try await JourneySchedulerTests.consent(fixture, "w@example.com")
            try await JourneySchedulerTests.consent(fixture, "x@example.com")
            for n in 0..<20 { try await JourneySchedulerTests.consent(fixture, "b\(n)@example.com") }
            // v gave the address for an order only: no marketing consent.

            // `SurveyWorker churn`, now and as of a moment in the past.
            func churn(_ arguments: [String]) async throws -> [String: [String: JSONValue]] {
                let command = try ChildProcess(
                    "SurveyWorker", ["churn", "--store", fixture.store] + arguments, environment: ["DATABASE_URL": fixture.databaseURL])
                #expect(try await command.waitForExit() == 0, "\(command.stderr)")
                var lines: [String: [String: JSONValue]] = [:]
                for line in command.stdout.split(separator: "\n") {
                    let object = try #require(try JSONValue.parse(Array(line.utf8)[...]).objectValue)
                    lines[object["shopper"]?["user_id"]?.stringValue ?? "?"] = object
                }
                return lines
            }
            let now = try await churn([])
            #expect(now.count == 26, "every customer with an order")
            #expect(now["u-r"]?["band"] == .string("high"), "well past their usual gap: \(now["u-r"] ?? [:])")
            #expect(now["u-n"]?["band"] != .string("high"), "a brand-new customer is not high risk: \(now["u-n"] ?? [:])")
            #expect(now["u-s"]?["band"] == .string("low") && now["u-s"]?["orders"] == .number(4), "the refunded order does not count: \(now["u-s"] ?? [:])")
            #expect(now["u-w"]?["band"] == .string("high") && now["u-w"]?["expected_gap_days"] == .number(30), "\(now["u-w"] ?? [:])")
            #expect(now["u-r"]?["shopper"]?["email"] == .string("r@example.com"))
            let risks = now.values.compactMap { $0["risk"]?.numberValue }
            #expect(risks.allSatisfy { (0...1).contains($0) })
            #expect((now["u-r"]?["risk"]?.numberValue ?? 0) > (now["u-s"]?["risk"]?.numberValue ?? 1))
            let asOf = Date().addingTimeInterval(-245 * 86_400).rfc3339
            let past = try await churn(["--as-of", asOf])
            #expect(Set(past.keys) == ["u-r"], "only orders placed up to --as-of: \(past.keys)")
            #expect(past["u-r"]?["orders"] == .number(2) && past["u-r"]?["band"] != .string("high"), "then a regular, not yet lapsed: \(past["u-r"] ?? [:])")
            let unknown = try ChildProcess("SurveyWorker", ["churn", "--store", "nowhere"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await unknown.waitForExit() == 1)
            #expect(unknown.stderr.contains("no store nowhere"))

            // The worker re-scores every second; each lapse gets one win-back step, due when the customer crossed `high`.
            let (_, port) = try await fixture.startWorker()
            try await eventually("every customer scored and the lapses' win-backs scheduled", timeout: .seconds(60)) {
                let rows = try await fixture.query(
                    """
                    SELECT (SELECT count(*) FROM survey_churn WHERE store_id = $1),
                           (SELECT count(*) FROM rapport_scheduled_steps WHERE store_id = $1 AND template = 'win_back')
                    """, [fixture.store])
                return try rows.first?.decode(Int.self, at: 0) == 26 && rows.first?.decode(Int.self, at: 1) == 24
            }
            let series = "rapport_churn_risk_count{store=\"\(fixture.store)\"}"
            #expect(await metric(port, series) >= 26, "the risk histogram by store")
            // x orders again before their win-back is sent: the lapse is over.
            try await fixture.publish([events.order("x-1", userID: "u-x", email: "x@example.com", days: 0)])
            try await Self.ordersApplied(fixture, orders.count + 1)

            let clock = ManualClock(Date())
            let directory = try StoreDirectory(json: Array(#"{"stores": {"\#(fixture.store)": \#(Self.winBackSettings)}}"#.utf8), setting: "TEST")
            var topics = Topics()
            topics.emailCommands = fixture.commandsTopic
            topics.recommendationCommands = fixture.recommendationsTopic
            let postgres = TestEnvironment.postgres(url: fixture.databaseURL, poolSize: 2)
            defer { postgres.close() }
            let scheduler = Scheduler(
                postgres: postgres, producer: fixture.producer,
                pipeline: PipelineConfiguration(worker: "SurveyWorker", groupID: fixture.group, inputTopic: fixture.inputTopic),
                handler: WinBackSteps(stores: directory, topics: topics),
                clock: { clock.now }, logger: TestEnvironment.logger)
            try await scheduler.tick()
            let outcome = try await Self.winBackOutcomes(fixture)
            #expect(outcome["u-w"] == "sent permitted")
            #expect(outcome["u-v"]?.hasPrefix("suppressed") == true, "no marketing consent: \(outcome["u-v"] ?? "")")
            #expect(outcome["u-x"] == "cancelled ordered_again")
            #expect(outcome["u-r"] == "dropped stale_event", "a lapse that began months ago is history")
            #expect((0..<20).allSatisfy { outcome["b-\($0)"] == "dropped stale_event" })
            #expect(outcome["u-n"] == nil && outcome["u-s"] == nil)

            let emails = try await JourneySchedulerTests.emails(fixture).filter { $0["template"] == .string("win_back") }
            #expect(emails.count == 1)
            let winBack = try #require(emails.first)
            #expect(winBack["to"]?["email"] == .string("w@example.com") && winBack["category"] == .string("marketing"))
            #expect(winBack["unsubscribe_token"]?.stringValue?.isEmpty == false)
            #expect(winBack["data"]?["offer_code"] == .string("COMEBACK"))
            #expect(winBack["data"]?["last_order_products"]?.arrayValue?.first?["product_id"] == .string("A"), "what they bought")
            let recommended = winBack["data"]?["recommendations"]?.arrayValue?.compactMap { $0["product_id"]?.stringValue } ?? []
            #expect(!recommended.isEmpty && !recommended.contains("A"), "\(recommended)")
            let recommendations = try await fixture.readToEnd(fixture.recommendationsTopic).compactMap { try? JSONValue.parse($0.value).objectValue }
            #expect(recommendations.filter { $0["context"] == .string("win_back") }.count == 1)
            let explained = try await Self.explain(fixture, ["--user-id", "u-w"])
            #expect(explained.contains("churn: risk 0.7"), "\(explained)")
            #expect(explained.contains("(high), 1.0× overdue on an expected gap of 30.0 days, 1 orders"))
            #expect(explained.contains("step      win_back (win_back): sent"))
            #expect(explained.contains("sent      win_back (marketing)"))

            // Once per lapse: later passes schedule nothing more for the same silence.
            let ticked = Date()
            try await eventually("another pass", timeout: .seconds(30)) {
                try await fixture.query("SELECT 1 FROM survey_churn WHERE store_id = $1 AND scored_at > $2 LIMIT 1", [fixture.store, ticked]).count > 0
            }
            let count = try await fixture.query("SELECT count(*) FROM rapport_scheduled_steps WHERE store_id = $1 AND template = 'win_back'", [fixture.store])
            #expect(try count.first?.decode(Int.self, at: 0) == 24)

            // x's next silence is a new lapse: scored as if 130 days had passed, x gets a second win-back.
            let later = Date().addingTimeInterval(130 * 86_400)
            let scorer = ChurnScorer(
                postgres: postgres, stores: directory, groupID: fixture.group, interval: .seconds(3600), clock: { later }, logger: TestEnvironment.logger)
            try await eventually("a pass of its own (the worker's passes hold the lock a moment)", timeout: .seconds(30)) { try await scorer.pass() != nil }
            let x = try #require(try await Self.shopperID(fixture, userID: "u-x"))
            let lapses = try await fixture.query(
                "SELECT state, causation_id FROM rapport_scheduled_steps WHERE store_id = $1 AND shopper_id = $2 AND template = 'win_back' ORDER BY due_at",
                [fixture.store, x])
            #expect(try lapses.map { try $0.decode(String.self, at: 0) ?? "" } == ["cancelled", "pending"], "one step per lapse")
        }
    }

    /// The CronJob deployment: the worker with `CHURN_RESCORE_SECONDS=0` scores nobody itself; `SurveyWorker rescore`
    /// scores every customer once, schedules each lapse's win-back for the worker's group, and the worker's own
    /// scheduler sends it. A second run schedules nothing more; a database without orders is an error.
    @Test func rescoreScoresEveryCustomerOnceAndTheWorkersSchedulerSendsTheWinBack() async throws {
        try await TestEnvironment.withPipeline(4, executable: "SurveyWorker", prefix: "it-srv") { fixture in
            let events = Events(fixture: fixture)
            let settings = try CaptureWorkerTests.settingsFile(fixture, Self.winBackSettings)
            fixture.extraEnvironment = ["STORE_SETTINGS_FILE": settings, "CHURN_RESCORE_SECONDS": "0"]
            try await Self.startReceiptWorker(fixture)
            var orders: [KafkaOutboundMessage] = []
            // Twenty customers who came back after 30 days, long ago: the store's usual gap.
            for n in 0..<20 {
                orders.append(events.order("b-\(n)-1", userID: "b-\(n)", email: "b\(n)@example.com", days: -200, product: "B"))
                orders.append(events.order("b-\(n)-2", userID: "b-\(n)", email: "b\(n)@example.com", days: -170, product: "C"))
            }
            // Two one-time customers whose expected return passed a day ago; only w gave marketing consent.
            for name in ["w", "v"] { orders.append(events.order("\(name)-0", userID: "u-\(name)", email: "\(name)@example.com", days: -31)) }
            try await fixture.publish(orders)
            try await Self.ordersApplied(fixture, orders.count)
            try await JourneySchedulerTests.consent(fixture, "w@example.com")
            try await fixture.startWorker()

            func rescore(_ url: String) async throws -> ChildProcess {
                let command = try ChildProcess(
                    "SurveyWorker", ["rescore"], environment: ["DATABASE_URL": url, "STORE_SETTINGS_FILE": settings, "KAFKA_GROUP_ID": fixture.group])
                _ = try await command.waitForExit(timeout: .seconds(120))
                return command
            }
            let first = try await rescore(fixture.databaseURL)
            #expect(first.process.terminationStatus == 0, "\(first.stderr)")
            #expect(first.stdout.hasPrefix("re-scored 22 customers"), "\(first.stdout)")
            func count(_ sql: String) async throws -> Int {
                try await fixture.query(sql, [fixture.store]).first?.decode(Int.self, at: 0) ?? -1
            }
            #expect(try await count("SELECT count(*) FROM survey_churn WHERE store_id = $1") == 22)
            #expect(try await count("SELECT count(*) FROM rapport_scheduled_steps WHERE store_id = $1 AND template = 'win_back'") == 22)

            // The worker's scheduler decides each: w's is sent, v's suppressed, the twenty lapses of months ago history.
            try await eventually("every win-back decided by the worker's scheduler", timeout: .seconds(60)) {
                try await count("SELECT count(*) FROM rapport_scheduled_steps WHERE store_id = $1 AND state = 'pending'") == 0
            }
            let outcome = try await Self.winBackOutcomes(fixture)
            #expect(outcome["u-w"] == "sent permitted")
            #expect(outcome["u-v"]?.hasPrefix("suppressed") == true, "\(outcome["u-v"] ?? "")")
            #expect((0..<20).allSatisfy { outcome["b-\($0)"] == "dropped stale_event" }, "\(outcome)")
            try await fixture.waitUntilConsumed()
            let emails = try await JourneySchedulerTests.emails(fixture).filter { $0["template"] == .string("win_back") }
            #expect(emails.count == 1 && emails.first?["to"]?["email"] == .string("w@example.com"), "\(emails)")
            #expect(emails.first?["data"]?["offer_code"] == .string("COMEBACK"))

            // Once per lapse: a second run scores again and schedules nothing.
            let again = try await rescore(fixture.databaseURL)
            #expect(again.process.terminationStatus == 0 && again.stdout.hasPrefix("re-scored 22 customers"), "\(again.stdout)\(again.stderr)")
            #expect(try await count("SELECT count(*) FROM rapport_scheduled_steps WHERE store_id = $1 AND template = 'win_back'") == 22)

            // Pointed at a database with no orders, it says so and fails (a CronJob's failure is seen).
            try await TestEnvironment.withFreshDatabase { empty in
                let migrate = try ChildProcess("SurveyWorker", ["migrate"], environment: ["DATABASE_URL": empty])
                #expect(try await migrate.waitForExit() == 0)
                let nothing = try await rescore(empty)
                #expect(nothing.process.terminationStatus == 1)
                #expect(nothing.stderr.contains("nothing re-scored"), "\(nothing.stderr)")
            }
        }
    }
}
