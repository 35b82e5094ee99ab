import Foundation
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

        func survey(_ id: String, userID: String?, email: String? = nil, minutes: Double = 0, surveyID: JSONValue? = .string("onboarding"),
                    answers: JSONValue?) -> KafkaOutboundMessage {
            var properties: [String: JSONValue] = [:]
            if let surveyID { properties["survey_id"] = surveyID }
            if let answers { properties["answers"] = answers }
            if let email { properties["email"] = .string(email) }
            return orders.track("Survey Submitted", id: id, userID: userID, minutes: minutes, properties: properties)
        }

        /// An order on the ReceiptWorker's topic, `days` from now (negative: in the past).
        func order(_ orderID: String, userID: String, email: String, days: Double, product: String = "A", category: String = "tea", price: Double = 20)
            -> KafkaOutboundMessage {
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

    static func deadLetterReasons(_ fixture: PipelineFixture) async throws -> [String] {
        try await fixture.readToEnd(fixture.deadLetterTopic).map { message in
            message.headers.first { $0.key == "dlq.message" }.map { String(decoding: $0.value ?? [], as: UTF8.self) } ?? ""
        }
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
                events.survey("s-2", userID: "u-1", minutes: 1, answers: .object([
                    "habits": .object(["time": .string("evening")]), "interests": .array([.string("pots"), .string("cups")]), "mood": .string("calm"),
                ])),
                // An older survey arriving late overrides nothing newer.
                events.survey("s-0", userID: "u-1", minutes: -10, answers: .object(["interests": .array([.string("coffee")]), "income_band": .string("25-50k")])),
                // A survey before any order, from a shopper never seen: the shopper is created.
                events.survey("s-new", userID: "u-new", minutes: 2, answers: .object(["channels": .array([])])),
                events.orders.track("Survey Viewed", id: "noise", userID: "u-1", minutes: 3, properties: [:]),
                events.survey("bad-1", userID: "u-1", minutes: 4, answers: .string("yes")),
                events.survey("bad-2", userID: "u-1", minutes: 4, answers: .object(["interests": .array([.number(1)])])),
                events.survey("bad-3", userID: "u-1", minutes: 4, answers: .object(["habits": .object(["time": .number(7)])])),
                events.survey("bad-4", userID: "u-1", minutes: 4, surveyID: nil, answers: .object([:])),
                events.survey("bad-5", userID: "u-1", minutes: 4, answers: .object(["income_band": .array([])])),
            ])
            try await CaptureWorkerTests.processed(fixture, 5)
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
            #expect(try stored.map { try $0.decode(String.self, at: 0) ?? "" } == ["s-0", "s-1", "s-2", "s-new"], "one row per submission, once")
            let answers = try stored.map { try $0.decode(String.self, at: 1) ?? "" }
            let kept = try JSONValue.parse(Array((answers.count > 1 ? answers[1] : "").utf8)[...])
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
            #expect(try preferences.first?.decode(String.self, at: 0) == #"["pots","cups"]"# && preferences.first?.decode(String.self, at: 1) == #"["instagram"]"#)
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
            #expect(decisions.contains("survey:onboarding recommend:post_survey dropped no_purchase_model"), "without ReceiptWorker's tables, nothing to say")

            // Erasure (CaptureWorker's Erasure Requested calls the dispatcher): every answer, the profile and the
            // preferences go.
            let contact = try #require(try await fixture.query("SELECT contact_id FROM rapport_contacts WHERE store_id = $1 AND email = 'ana@example.com'", [fixture.store]).first?.decode(Int64.self, at: 0))
            _ = try await fixture.query("SELECT rapport_erase_contact($1, $2, $3)", [fixture.store, contact, PostgresArray(["\(fixture.store)/u-1"])])
            for table in ["survey_responses", "survey_profiles", "rapport_shopper_preferences"] {
                let left = try await fixture.query(
                    "SELECT count(*) FROM \(table) t WHERE t.store_id = $1 AND (t::text ILIKE '%sencha%' OR t.shopper_id = $2)", [fixture.store, ana])
                #expect(try left.first?.decode(Int.self, at: 0) == 0, "\(table) keeps nothing of the erased shopper")
            }
            let others = try await fixture.query("SELECT count(*) FROM survey_responses WHERE store_id = $1", [fixture.store])
            #expect(try others.first?.decode(Int.self, at: 0) == 1, "the other shopper's answers stay")
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
            for n in 0..<40 { orders.append(events.order("x-\(n)", userID: "h-\(n)", email: "h\(n)@example.com", days: -10 - Double(n % 5), product: "X", category: "misc")) }
            for n in 0..<6 { orders.append(events.order("p-\(n)", userID: "p-\(n)", email: "p\(n)@example.com", days: -12, product: n < 4 ? "P1" : "P2", category: "pots")) }
            // Ana's and Bo's first orders, now: a journey each.
            orders.append(events.order("ana-1", userID: "u-1", email: "ana@example.com", days: 0, product: "T1", category: "tea"))
            orders.append(events.order("bo-1", userID: "u-2", email: "bo@example.com", days: 0, product: "T1", category: "tea"))
            try await fixture.publish(orders)
            try await Self.ordersApplied(fixture, orders.count)
            #expect(try await JourneySchedulerTests.steps(fixture).filter { $0.hasPrefix("walk_with_me") } == ["walk_with_me pending ", "walk_with_me pending "])

            try await fixture.publish([
                events.survey("s-ana", userID: "u-1", email: "ana@example.com", minutes: 130, answers: .object([
                    "interests": .array([.string("pots")]), "channels": .array([.string("instagram"), .string("loyalty")]),
                ])),
                // Webinars: the store has none. Bo chose no channel the walk-with-me could invite to.
                events.survey("s-bo", userID: "u-2", minutes: 131, answers: .object(["channels": .array([.string("webinars")])])),
            ])
            try await Self.surveysApplied(fixture, 2)
            let recommendations = try await ReceiptWorkerTests.commands(fixture, fixture.recommendationsTopic).filter { $0["context"] == .string("post_survey") }
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
            let (scheduler, postgres) = try JourneySchedulerTests.scheduler(fixture, clock: clock, settings: Self.channelSettings, group: fixture.group + "-receipt")
            defer { postgres.close() }
            try await scheduler.tick()
            let walk = try #require(try await JourneySchedulerTests.emails(fixture).first { $0["template"] == .string("walk_with_me") })
            let channels = walk["data"]?["channels"]?.arrayValue ?? []
            #expect(channels.compactMap { $0["name"]?.stringValue } == ["Instagram", "Club"], "\(channels)")
            #expect(walk["to"]?["email"] == .string("ana@example.com"))
        }
    }
}
