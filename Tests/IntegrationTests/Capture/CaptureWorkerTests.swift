import ConsentScenarios
import Foundation
import Shared
import Testing

/// CaptureWorker end to end: the worker as its own process, real PostgreSQL, the embedded Kafka; one test per rule.
@Suite(.serialized) struct CaptureWorkerTests {
    /// Builds `shopper-events` messages for one fixture's store.
    struct Events {
        /// Two hours ago, to the minute: recent enough to converse (an event older than `stale_after_hours` starts
        /// nothing), and later minutes stay in the past or near future.
        static let base = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 2 * 3600)

        let fixture: PipelineFixture
        var store: String { fixture.store }

        func message(_ body: [String: JSONValue], key: String) -> KafkaOutboundMessage {
            var body = body
            var context = body["context"]?.objectValue ?? [:]
            context["storeId"] = .string(store)
            body["context"] = .object(context)
            return KafkaOutboundMessage(topic: fixture.inputTopic, key: Array("\(store)/\(key)".utf8), value: JSONValue.object(body).encoded())
        }

        func track(
            _ event: String, id: String, anonymousID: String, minutes: Double = 0, properties: [String: JSONValue] = [:],
            context: [String: JSONValue] = [:], userID: String? = nil, key: String? = nil
        ) -> KafkaOutboundMessage {
            var body: [String: JSONValue] = [
                "type": .string("track"), "event": .string(event), "messageId": .string(id), "anonymousId": .string(anonymousID),
                "timestamp": .string(Self.base.addingTimeInterval(minutes * 60).rfc3339), "properties": .object(properties),
                "context": .object(context),
            ]
            if let userID { body["userId"] = .string(userID) }
            return message(body, key: key ?? userID ?? anonymousID)
        }

        func identify(id: String, userID: String, anonymousID: String, traits: [String: JSONValue], minutes: Double = 0) -> KafkaOutboundMessage {
            message(
                [
                    "type": .string("identify"), "messageId": .string(id), "userId": .string(userID), "anonymousId": .string(anonymousID),
                    "timestamp": .string(Self.base.addingTimeInterval(minutes * 60).rfc3339), "traits": .object(traits),
                ], key: userID)
        }

        func capture(
            id: String, anonymousID: String, email: String, marketing: Bool?, offer: String? = "WELCOME10", minutes: Double = 0,
            context: [String: JSONValue] = [:]
        ) -> KafkaOutboundMessage {
            var properties: [String: JSONValue] = ["email": .string(email), "source": .string("popup")]
            if let offer { properties["offer_code"] = .string(offer) }
            if let marketing {
                properties["consent"] = .object([
                    "marketing": .bool(marketing), "opt_in_level": .string("single"), "text": .string("Send me offers"), "text_version": .string("v2"),
                ])
            }
            return track("Email Captured", id: id, anonymousID: anonymousID, minutes: minutes, properties: properties, context: context)
        }

        func feedback(
            _ event: String, id: String, anonymousID: String, email: String, minutes: Double, bounce: String? = nil, token: String? = nil
        ) -> KafkaOutboundMessage {
            var properties: [String: JSONValue] = ["email": .string(email)]
            if let bounce { properties["bounce_type"] = .string(bounce) }
            if let token { properties["token"] = .string(token) }
            return track(event, id: id, anonymousID: anonymousID, minutes: minutes, properties: properties)
        }
    }

    /// Writes a settings file for the fixture's store and returns its path.
    static func settingsFile(_ fixture: PipelineFixture, _ settings: String) throws -> String {
        let url = TestEnvironment.runDirectory.appendingPathComponent(TestEnvironment.unique("settings") + ".json")
        try Data(#"{"stores": {"\#(fixture.store)": \#(settings)}}"#.utf8).write(to: url)
        return url.path
    }

    /// Every email command of the fixture's store on the wire, as JSON objects, once the worker has finished with
    /// everything published so far (read to the topic's high watermark: extra or repeated commands are seen).
    static func emails(_ fixture: PipelineFixture) async throws -> [[String: JSONValue]] {
        try await fixture.waitUntilConsumed()
        return try await fixture.readToEnd(fixture.commandsTopic).compactMap { try? JSONValue.parse($0.value).objectValue }
    }

    /// Waits until the worker has finished with everything published so far, and checks that exactly `count`
    /// distinct messages of the fixture's store were applied (de-duplication rows).
    static func processed(_ fixture: PipelineFixture, _ count: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await fixture.waitUntilConsumed()
        let rows = try await fixture.query("SELECT count(*) FROM rapport_processed_messages WHERE store_id = $1", [fixture.store])
        #expect(try rows.first?.decode(Int.self, at: 0) == count, "messages applied", sourceLocation: sourceLocation)
    }

    static func contact(_ fixture: PipelineFixture, _ email: String) async throws -> PostgresRow? {
        try await fixture.query(
            """
            SELECT transactional_ok, marketing_consent, consent_level, awaiting_confirmation, suppression, soft_bounce_streak, erased_at IS NOT NULL
            FROM rapport_contacts WHERE store_id = $1 AND email = $2
            """, [fixture.store, email]
        ).first
    }

    @Test func anImportedHistoryRecordsConsentAndStartsNoConversation() async throws {
        try await TestEnvironment.withPipeline(11, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            try await fixture.startWorker()
            let tenDaysAgo = -10.0 * 24 * 60
            try await fixture.publish([
                events.track("Product Viewed", id: "old-view", anonymousID: "anon-old", minutes: tenDaysAgo, properties: ["product_id": .string("p-1")]),
                events.capture(id: "old-cap", anonymousID: "anon-old", email: "old@example.com", marketing: true, minutes: tenDaysAgo + 1),
                events.capture(id: "new-cap", anonymousID: "anon-new", email: "new@example.com", marketing: true),
            ])
            try await Self.processed(fixture, 3)
            let emails = try await Self.emails(fixture)
            #expect(emails.map { $0["to"]?["email"] } == [.string("new@example.com")], "only the fresh capture is welcomed")
            let recommendations = try await fixture.readToEnd(fixture.recommendationsTopic)
            #expect(recommendations.isEmpty, "the old view recommends nothing")
            let old = try #require(try await Self.contact(fixture, "old@example.com"))
            #expect(try old.decode(Bool.self, at: 1) == true, "the consent is state: recorded")
            let decisions = try await fixture.query(
                "SELECT template, decision, reason FROM rapport_contact_decisions WHERE store_id = $1 AND causation_id LIKE 'old-%' ORDER BY template",
                [fixture.store])
            #expect(
                try decisions.map {
                    "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(String.self, at: 1) ?? "") \(try $0.decode(String.self, at: 2) ?? "")"
                }
                    == ["recommend:browse dropped stale_event", "welcome_offer dropped stale_event"])
        }
    }

    @Test func aPopupCaptureRecordsConsentAsGivenAndSendsOnePersonalWelcome() async throws {
        try await TestEnvironment.withPipeline(1, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            try await fixture.startWorker()
            let capture = events.capture(
                id: "cap-1", anonymousID: "anon-1", email: " Ana@Example.COM ", marketing: true, minutes: 10,
                context: ["ip": .string("198.51.100.7"), "userAgent": .string("Mozilla/5.0 test")])
            try await fixture.publish([
                events.track("Product Viewed", id: "view-1", anonymousID: "anon-1", properties: ["product_id": .string("sku-42"), "category": .string("tea")]),
                events.track("Product Viewed", id: "view-2", anonymousID: "anon-1", minutes: 1, properties: ["product_id": .string("sku-7")]),
                capture, capture,  // published twice: one effect
                events.capture(id: "cap-2", anonymousID: "anon-1", email: "ana@example.com", marketing: true, minutes: 60),
            ])
            try await Self.processed(fixture, 4)
            let welcomes = try await Self.emails(fixture)
                .filter { $0["template"] == .string("welcome_offer") }
            #expect(welcomes.count == 1)
            let welcome = try #require(welcomes.first)
            #expect(welcome["to"]?["email"] == .string("ana@example.com"), "normalised")
            #expect(welcome["category"] == .string("marketing"))
            #expect(welcome["data"]?["offer_code"] == .string("WELCOME10"))
            #expect(welcome["data"]?["viewed_products"] == .array([.string("sku-7"), .string("sku-42")]), "browsing before the capture counts")
            #expect(welcome["unsubscribe_token"]?.stringValue?.count == 32)
            #expect(welcome["causation_id"] == .string("cap-1"))
            let ledger = try await fixture.query(
                "SELECT kind, marketing, source, opt_in_level, consent_text, text_version, ip, user_agent, message_id FROM capture_consent_ledger WHERE store_id = $1",
                [fixture.store])
            #expect(ledger.count == 2, "each consent event recorded once")
            let first = try #require(ledger.first { (try? $0.decode(String.self, at: 8)) == "cap-1" })
            #expect(try first.decode(Bool.self, at: 1) == true)
            #expect(try first.decode(String.self, at: 4) == "Send me offers")
            #expect(try first.decode(String.self, at: 5) == "v2")
            #expect(try first.decode(String.self, at: 6) == "198.51.100.7")
            #expect(try first.decode(String.self, at: 7) == "Mozilla/5.0 test")
            // Never rewritten.
            await #expect(throws: PostgresError.self) { _ = try await fixture.query("UPDATE capture_consent_ledger SET marketing = false") }
            await #expect(throws: PostgresError.self) { _ = try await fixture.query("DELETE FROM capture_consent_ledger") }
            let decisions = Array(
                try await fixture.query(
                    "SELECT decision, reason FROM rapport_contact_decisions WHERE store_id = $1 AND template = 'welcome_offer' ORDER BY decided_at",
                    [fixture.store]))
            #expect(try decisions.map { try $0.decode(String.self, at: 0) ?? "" } == ["sent", "dropped"])
            #expect(try decisions.last?.decode(String.self, at: 1) == "welcome_already_offered")
        }
    }

    @Test func identifyLinksAnonymousBrowsingToTheKnownShopperAndBrowseRecommendationsRespectTheirWindow() async throws {
        try await TestEnvironment.withPipeline(2, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            try await fixture.startWorker()
            // One key for the whole story, so that it stays in order (a storefront's key changes at login; see the model
            // tests for events that arrive out of order). The story starts 31 hours ago, so that its last view, two
            // hours ago, falls after the first view's 24-hour window (an event more than a day ahead of the worker's
            // clock is refused).
            let start = -29.0 * 60
            try await fixture.publish([
                events.identify(
                    id: "id-0", userID: "user-9", anonymousID: "anon-phone", traits: ["email": .string("bo@example.com"), "firstName": .string("Bo")],
                    minutes: start),
                events.track(
                    "Product Viewed", id: "v-1", anonymousID: "anon-laptop", minutes: start, properties: ["product_id": .string("p-1")], key: "user-9"),
                events.track(
                    "Product Added", id: "v-2", anonymousID: "anon-laptop", minutes: start + 1, properties: ["product_id": .string("p-1")], key: "user-9"),
                events.track(
                    "Product Viewed", id: "v-3", anonymousID: "anon-laptop", minutes: start + 2, properties: ["product_id": .string("p-2")], key: "user-9"),
                events.identify(id: "id-1", userID: "user-9", anonymousID: "anon-laptop", traits: ["lastName": .string("Berg")], minutes: start + 3),
                events.track("Product Viewed", id: "v-4", anonymousID: "anon-laptop", minutes: 0, properties: ["product_id": .string("p-3")], userID: "user-9"),
            ])
            try await Self.processed(fixture, 6)
            let shoppers = try await fixture.query(
                "SELECT DISTINCT shopper_id FROM rapport_identities WHERE store_id = $1", [fixture.store])
            #expect(shoppers.count == 1, "user id, both anonymous ids and the email resolve to one shopper")
            let interest = try await fixture.query(
                "SELECT views, adds FROM capture_interests WHERE store_id = $1 AND kind = 'product' AND item = 'p-1'", [fixture.store]
            ).first
            #expect(try interest?.decode(Int.self, at: 0) == 1 && interest?.decode(Int.self, at: 1) == 1)
            let names = try await fixture.query("SELECT first_name, last_name FROM capture_shoppers WHERE store_id = $1", [fixture.store]).first
            #expect(try names?.decode(String.self, at: 0) == "Bo" && names?.decode(String.self, at: 1) == "Berg")
            try await fixture.waitUntilConsumed()
            let recommendations = try await fixture.readToEnd(fixture.recommendationsTopic)
            #expect(recommendations.count == 2, "one at the first view, one after the 24 h window")
            let last = try #require(recommendations.compactMap { try? JSONValue.parse($0.value).objectValue }.first { $0["causation_id"] == .string("v-4") })
            #expect(last["type"] == .string("RecommendProducts") && last["context"] == .string("browse"))
            #expect(last["shopper"]?["user_id"] == .string("user-9"))
            #expect(last["products"]?.arrayValue?.first?["product_id"] == .string("p-3"))
        }
    }

    @Test func doubleOptInConfirmsFirstAndAWithdrawalBeforeConfirmationMeansNoWelcome() async throws {
        try await TestEnvironment.withPipeline(3, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            fixture.extraEnvironment = ["STORE_SETTINGS_FILE": try Self.settingsFile(fixture, #"{"double_opt_in": true}"#)]
            try await fixture.startWorker()
            try await fixture.publish([
                events.capture(id: "c-1", anonymousID: "a-1", email: "cy@example.com", marketing: true),
                events.capture(id: "c-2", anonymousID: "a-2", email: "di@example.com", marketing: true),
                events.feedback("Unsubscribed", id: "un-2", anonymousID: "a-2", email: "di@example.com", minutes: 20),
            ])
            try await Self.processed(fixture, 3)
            // Each address is confirmed with the token its confirm_subscription email carried, as the link in it does.
            let requests = try await Self.emails(fixture)
            func token(_ to: String) -> String? {
                requests.first { $0["to"]?["email"] == .string(to) && $0["template"] == .string("confirm_subscription") }?["data"]?["confirmation_token"]?
                    .stringValue
            }
            let cyToken = try #require(token("cy@example.com"))
            let diToken = try #require(token("di@example.com"))
            try await fixture.publish([
                events.feedback(
                    "Email Confirmed", id: "forged-1", anonymousID: "a-1", email: "cy@example.com", minutes: 25, token: String(repeating: "0", count: 32)),
                events.feedback("Email Confirmed", id: "ok-1", anonymousID: "a-1", email: "cy@example.com", minutes: 30, token: cyToken),
                events.feedback("Email Confirmed", id: "ok-2", anonymousID: "a-2", email: "di@example.com", minutes: 40, token: diToken),
            ])
            try await Self.processed(fixture, 6)
            let forged = try await fixture.query(
                "SELECT decision, reason FROM rapport_contact_decisions WHERE store_id = $1 AND causation_id = 'forged-1'", [fixture.store])
            #expect(
                try forged.map { "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(String.self, at: 1) ?? "")" } == [
                    "dropped confirmation_token_mismatch"
                ])
            let emails = try await Self.emails(fixture)
            func sent(_ to: String) -> [String] {
                emails.filter { $0["to"]?["email"] == .string(to) }.compactMap { $0["template"]?.stringValue }.sorted()
            }
            #expect(sent("cy@example.com") == ["confirm_subscription", "welcome_offer"])
            #expect(sent("di@example.com") == ["confirm_subscription"], "consent withdrawn between scheduling and sending: not sent")
            let confirm = try #require(emails.first { $0["template"] == .string("confirm_subscription") })
            #expect(confirm["category"] == .string("transactional"))
            #expect(confirm["data"]?["confirmation_token"]?.stringValue?.count == 32)
            let welcome = try #require(emails.first { $0["template"] == .string("welcome_offer") })
            #expect(welcome["causation_id"] == .string("ok-1"), "released by the confirmation")
            #expect(try await Self.contact(fixture, "cy@example.com")?.decode(String.self, at: 2) == "confirmed")
            let withheld = try await fixture.query(
                "SELECT decision, reason FROM rapport_contact_decisions WHERE store_id = $1 AND causation_id = 'c-2' AND template = 'welcome_offer' ORDER BY id",
                [fixture.store])
            #expect(
                try withheld.map { "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(String.self, at: 1) ?? "")" }
                    == ["deferred awaiting_confirmation", "suppressed unsubscribed"])
        }
    }

    @Test func checkoutIsTransactionalOnlySoftOptInIsPerStoreAndFeedbackSuppresses() async throws {
        try await TestEnvironment.withPipeline(4, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            try await fixture.startWorker()
            var messages = [
                events.track("Checkout Started", id: "co-1", anonymousID: "a-1", properties: ["email": .string("eve@example.com")]),
                events.capture(id: "c-2", anonymousID: "a-2", email: "fay@example.com", marketing: true, offer: nil),
                events.feedback("Email Marked as Spam", id: "sp-2", anonymousID: "a-2", email: "fay@example.com", minutes: 5),
                events.capture(id: "c-3", anonymousID: "a-3", email: "gus@example.com", marketing: true, offer: nil),
                events.feedback("Email Bounced", id: "hb-3", anonymousID: "a-3", email: "gus@example.com", minutes: 5, bounce: "hard"),
                events.capture(id: "c-4", anonymousID: "a-4", email: "hal@example.com", marketing: true, offer: nil),
            ]
            messages += (1...7).map {
                events.feedback("Email Bounced", id: "sb-\($0)", anonymousID: "a-4", email: "hal@example.com", minutes: Double($0), bounce: "soft")
            }
            // Bad capture events: the contract's fields checked per event, each to the dead-letter topic.
            let bad = [
                events.track("Email Captured", id: "bad-1", anonymousID: "a-9", properties: ["source": .string("popup")]),
                events.track("Email Captured", id: "bad-2", anonymousID: "a-9", properties: ["email": .string("not-an-address")]),
                events.track(
                    "Email Bounced", id: "bad-3", anonymousID: "a-9", properties: ["email": .string("x@example.com"), "bounce_type": .string("bouncy")]),
                events.track("Product Viewed", id: "bad-4", anonymousID: "a-9", properties: ["product_id": .bool(true)]),
            ]
            try await fixture.publish(messages + bad)
            try await Self.processed(fixture, messages.count)
            try await fixture.waitUntilConsumed()
            let dead = try await fixture.readToEnd(fixture.deadLetterTopic)
            #expect(dead.count == bad.count)
            #expect(dead.allSatisfy { $0.header("dlq.reason") == "schema_violation" && $0.header("dlq.worker") == "CaptureWorker" })
            #expect(
                Set(dead.compactMap { $0.header("dlq.message") }) == [
                    "properties.email is required", "properties.email is not a valid email address",
                    "properties.bounce_type must be hard or soft", "properties.product_id must be a string or an integer, not a boolean",
                ])
            let log = fixture.workers.first?.stdout ?? ""
            #expect(log.contains(#""event.message_id":"bad-2""#), "the dead-letter log line names the message")
            #expect(!log.contains("not-an-address"), "never the offending value")
            // KAFKA_SESSION_TIMEOUT_MS and KAFKA_HEARTBEAT_INTERVAL_MS (the fixture's) reach the consumer only.
            #expect(!log.contains("CONFWARN"), "no consumer property given to the producer")
            let eve = try #require(try await Self.contact(fixture, "eve@example.com"))
            #expect(try eve.decode(Bool.self, at: 0) == true && eve.decode(Bool.self, at: 1) == false, "email-first checkout: transactional only")
            let fay = try #require(try await Self.contact(fixture, "fay@example.com"))
            #expect(try fay.decode(Bool.self, at: 1) == false && fay.decode(String.self, at: 4) == "marketing")
            let gus = try #require(try await Self.contact(fixture, "gus@example.com"))
            #expect(try gus.decode(Bool.self, at: 0) == false && gus.decode(String.self, at: 4) == "all")
            let hal = try #require(try await Self.contact(fixture, "hal@example.com"))
            #expect(try hal.decode(String.self, at: 4) == "all" && hal.decode(Int.self, at: 5) == 7)
        }
        try await TestEnvironment.withPipeline(5, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            fixture.extraEnvironment = ["STORE_SETTINGS_FILE": try Self.settingsFile(fixture, #"{"soft_opt_in": true}"#)]
            try await fixture.startWorker()
            try await fixture.publish([
                events.track("Checkout Started", id: "co-1", anonymousID: "a-1", context: ["traits": .object(["email": .string("ida@example.com")])])
            ])
            try await Self.processed(fixture, 1)
            let ida = try #require(try await Self.contact(fixture, "ida@example.com"))
            #expect(try ida.decode(Bool.self, at: 1) == true && ida.decode(String.self, at: 2) == "soft", "soft opt-in where the store uses it")
        }
    }

    @Test func erasureLeavesNoEmailOrNameInAnyTextColumnAndRefusesReimport() async throws {
        try await TestEnvironment.withPipeline(6, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try Self.settingsFile(fixture, #"{"keep_erasure_hash": true, "double_opt_in": true}"#),
                "ERASURE_HASH_SALT": "a-test-salt-of-some-length",
            ]
            // Every worker's tables in the one database, each holding this shopper's data under their shopper key.
            for worker in ["ReceiptWorker", "SurveyWorker"] {
                let migrate = try ChildProcess(worker, ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
                #expect(try await migrate.waitForExit() == 0)
            }
            _ = try await fixture.query(
                "INSERT INTO receipt_orders (store_id, order_id, shopper_key, currency, placed_at) VALUES ($1, 'o-1', $1 || '/u-zq', 'EUR', now())",
                [fixture.store])
            _ = try await fixture.query(
                """
                INSERT INTO survey_responses (store_id, message_id, survey_id, shopper_key, answers, submitted_at)
                VALUES ($1, 's-1', 'onboarding', $1 || '/a-zq', '{"about": "I am Zelda Quist"}', now())
                """, [fixture.store])
            // A journey step sent long ago, keyed by the address, one still to come, and a command that could never be
            // published, parked in the outbox under the shopper's key: all name her.
            _ = try await fixture.query(
                """
                INSERT INTO rapport_scheduled_steps (store_id, group_id, journey, template, shopper_key, email, causation_id, due_at, state)
                VALUES ($1, 'other-group', 'orientation', 'thank_you', $1 || '/zelda.quist@example.com', NULL, 'old-order', now() - interval '30 days', 'sent'),
                       ($1, 'other-group', 'orientation', 'next_sale', $1 || '/u-zq', 'zelda.quist@example.com', 'old-order', now() + interval '9 days', 'pending')
                """, [fixture.store])
            _ = try await fixture.query(
                """
                INSERT INTO rapport_outbox (group_id, source_topic, source_partition, topic, key, value, headers, parked_at, parked_reason)
                VALUES ('other-group', 'in', 0, 'email-commands', convert_to($1 || '/u-zq', 'UTF8'),
                        convert_to('{"to": {"email": "zelda.quist@example.com", "name": "Zelda Quist"}}', 'UTF8'), '\\x', now(), 'too large')
                """, [fixture.store])
            try await fixture.startWorker()
            let email = "zelda.quist@example.com"
            try await fixture.publish([
                events.identify(
                    id: "i-1", userID: "u-zq", anonymousID: "a-zq",
                    traits: [
                        "email": .string(email), "firstName": .string("Zelda"), "lastName": .string("Quist"), "bio": .string("Zelda Quist likes tea"),
                    ]),
                events.track("Product Viewed", id: "v-1", anonymousID: "a-zq", minutes: 1, properties: ["product_id": .string("p-1")]),
                events.capture(
                    id: "c-1", anonymousID: "a-zq", email: email, marketing: true, minutes: 2,
                    context: ["ip": .string("192.0.2.55"), "userAgent": .string("ZeldaBrowser/1")]),
                events.track("Erasure Requested", id: "e-1", anonymousID: "a-zq", minutes: 3, properties: ["email": .string(email)]),
            ])
            // Everything the events caused is on the wire and the outbox has drained: what is left is state.
            try await fixture.waitUntilConsumed()
            // Every text, json, bytea and array column of every table, found in the catalogue (bytea: the outbox keeps
            // command bodies and dead letters there).
            let columns = try await fixture.query(
                """
                SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
                JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
                  AND c.data_type IN ('text', 'character varying', 'character', 'jsonb', 'json', 'bytea', 'ARRAY')
                """)
            #expect(columns.count > 20)
            #expect(try columns.contains { try $0.decode(String.self, at: 2) == "bytea" }, "the scan covers bytea columns")
            var leaks: [String] = []
            for column in columns {
                let table = try column.decode(String.self, at: 0) ?? ""
                let name = try column.decode(String.self, at: 1) ?? ""
                let quoted = PostgresConnection.quoteIdentifier(name)
                // bytea as text escapes only non-printable bytes, so the patterns match inside it as they do in text.
                let value = try column.decode(String.self, at: 2) == "bytea" ? "encode(\(quoted), 'escape')" : "\(quoted)::text"
                let hits = try await fixture.query(
                    "SELECT count(*) FROM \(PostgresConnection.quoteIdentifier(table)) WHERE \(value) ILIKE ANY($1::text[])",
                    [PostgresArray(["%zelda.quist%", "%Zelda%", "%Quist%", "%192.0.2.55%", "%ZeldaBrowser%"])])
                if try hits.first?.decode(Int.self, at: 0) ?? 0 > 0 { leaks.append("\(table).\(name)") }
            }
            #expect(leaks.isEmpty, "personal data left in \(leaks)")
            let steps = try await fixture.query(
                "SELECT template, state, coalesce(reason, ''), shopper_key FROM rapport_scheduled_steps WHERE store_id = $1 ORDER BY template", [fixture.store]
            ).map { row in (0..<4).map { (try? row.decode(String.self, at: $0)) ?? "" }.joined(separator: " ") }
            #expect(
                steps == ["next_sale cancelled erased \(fixture.store)/erased", "thank_you sent  \(fixture.store)/erased"],
                "the pending step ended by the erasure")
            // Other workers' data too: the order stays for the store's books and the next-sale model, without its buyer.
            let orders = try await fixture.query("SELECT shopper_key, user_id FROM receipt_orders WHERE store_id = $1", [fixture.store])
            #expect(try orders.map { try $0.decode(String.self, at: 0) ?? "" } == ["\(fixture.store)/erased:o-1"], "other workers' data erased too")
            #expect(try await fixture.query("SELECT 1 FROM rapport_erased_addresses WHERE store_id = $1", [fixture.store]).count == 1)
            // Re-import is refused: a new capture of the erased address creates nothing.
            try await fixture.publish([events.capture(id: "c-again", anonymousID: "a-new", email: email, marketing: true, minutes: 10)])
            try await Self.processed(fixture, 5)
            #expect(try await fixture.query("SELECT 1 FROM rapport_identities WHERE store_id = $1", [fixture.store]).count == 0)
            let emails = try await Self.emails(fixture)
            #expect(emails.allSatisfy { $0["causation_id"] != .string("c-again") })
        }
    }

    @Test func explainTellsWhyAShopperDidOrDidNotGetAnEmail() async throws {
        try await TestEnvironment.withPipeline(7, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            try await fixture.startWorker()
            try await fixture.publish([
                events.capture(id: "c-1", anonymousID: "a-1", email: "jo@example.com", marketing: true),
                events.capture(id: "c-2", anonymousID: "a-1", email: "jo@example.com", marketing: true, minutes: 5),
                events.track("Product Viewed", id: "v-1", anonymousID: "a-1", minutes: 7, properties: ["product_id": .string("p-1")]),
                events.feedback("Unsubscribed", id: "u-1", anonymousID: "a-1", email: "jo@example.com", minutes: 9),
            ])
            try await Self.processed(fixture, 4)
            let explain = try ChildProcess(
                "CaptureWorker", ["explain", "--store", fixture.store, "--email", "Jo@Example.com"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await explain.waitForExit() == 0)
            let output = explain.stdout
            #expect(output.contains("suppressed: marketing"))
            #expect(output.contains("event     Email Captured  [message c-1]"))
            #expect(output.contains("consent   consent  marketing yes, source popup, opt-in single, text version v2  [message c-1]"))
            #expect(output.contains("sent      welcome_offer (marketing)"))
            #expect(output.contains("dropped   welcome_offer (marketing) — welcome_already_offered"))
            #expect(output.contains("consent   unsubscribe  marketing no"))
            #expect(output.contains("sent      recommend:browse (recommendation)  [command "), "every command, recommendations too")
            let lines = output.split(separator: "\n")
            #expect(
                lines.firstIndex { $0.contains("welcome_already_offered") } ?? 0 > lines.firstIndex { $0.contains("sent      welcome_offer") } ?? 0,
                "oldest first")
        }
    }

    @Test func aDirectAnswerGoesAtOnceInQuietHoursAndCountsTowardThePressureBudget() async throws {
        try await TestEnvironment.withPipeline(8, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            try await fixture.startWorker()
            // The last 23:00 in Los Angeles at least an hour ago — inside the default quiet hours there (21:00–08:00),
            // whatever the hour of the run, and recent enough to converse.
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = try #require(TimeZone(identifier: "America/Los_Angeles"))
            var moment = Date().addingTimeInterval(-3600)
            while calendar.component(.hour, from: moment) != 23 { moment.addTimeInterval(-3600) }
            #expect((21...23).contains(calendar.component(.hour, from: moment)), "inside the quiet hours")
            try await fixture.publish([
                events.capture(
                    id: "c-1", anonymousID: "a-1", email: "kim@example.com", marketing: true, minutes: moment.timeIntervalSince(Events.base) / 60,
                    context: ["timezone": .string("America/Los_Angeles")])
            ])
            try await Self.processed(fixture, 1)
            let emails = try await Self.emails(fixture)
            #expect(emails.count { $0["template"] == .string("welcome_offer") } == 1)
            let counted = try await fixture.query(
                "SELECT count(*) FROM rapport_contact_decisions WHERE store_id = $1 AND category = 'marketing' AND decision = 'sent'", [fixture.store])
            #expect(try counted.first?.decode(Int.self, at: 0) == 1, "the send is what the caps count")
            #expect(try await Self.contact(fixture, "kim@example.com").map { _ in true } == true)
            let zone = try await fixture.query("SELECT time_zone FROM rapport_contacts WHERE store_id = $1", [fixture.store])
            #expect(try zone.first?.decode(String.self, at: 0) == "America/Los_Angeles", "the shopper's zone is kept for scheduled sends")
        }
    }

    /// Random event sequences for `shoppers` shoppers (capture, consent, confirmation, checkout, unsubscribe, spam,
    /// bounces, browsing, erasure), each shopper's in order seven minutes apart, and each shopper's steps by address.
    static func randomConsentStream(_ events: Events, shoppers: Int, seed: UInt64) -> (messages: [KafkaOutboundMessage], sequences: [String: [ConsentStep]]) {
        var generator = SplitMix(state: seed)
        var sequences: [String: [ConsentStep]] = [:]
        var messages: [KafkaOutboundMessage] = []
        for shopper in 0..<shoppers {
            let anonymous = "anon-\(shopper)"
            let email = "shopper\(shopper)@example.com"
            let steps = (0..<Int.random(in: 3...14, using: &generator)).map { _ in ConsentStep.random(using: &generator) }
            sequences[email] = steps
            for (index, step) in steps.enumerated() {
                let id = "\(shopper)-\(index)"
                let minutes = Double(index) * 7
                let message: KafkaOutboundMessage =
                    switch step {
                    case .capture(let marketing, let level, let offer):
                        events.track(
                            "Email Captured", id: id, anonymousID: anonymous, minutes: minutes,
                            properties: [
                                "email": .string(email), "source": .string("popup"), "offer_code": offer ? .string("HELLO") : .null,
                                "consent": marketing.map { .object(["marketing": .bool($0), "opt_in_level": .string(level)]) } ?? .null,
                            ])
                    case .confirmed: events.feedback("Email Confirmed", id: id, anonymousID: anonymous, email: email, minutes: minutes)
                    case .checkout: events.track("Checkout Started", id: id, anonymousID: anonymous, minutes: minutes, properties: ["email": .string(email)])
                    case .unsubscribe: events.feedback("Unsubscribed", id: id, anonymousID: anonymous, email: email, minutes: minutes)
                    case .spam: events.feedback("Email Marked as Spam", id: id, anonymousID: anonymous, email: email, minutes: minutes)
                    case .softBounce: events.feedback("Email Bounced", id: id, anonymousID: anonymous, email: email, minutes: minutes, bounce: "soft")
                    case .hardBounce: events.feedback("Email Bounced", id: id, anonymousID: anonymous, email: email, minutes: minutes, bounce: "hard")
                    case .viewed:
                        events.track("Product Viewed", id: id, anonymousID: anonymous, minutes: minutes, properties: ["product_id": .string("p-\(index)")])
                    case .erasure: events.track("Erasure Requested", id: id, anonymousID: anonymous, minutes: minutes, properties: ["email": .string(email)])
                    }
                messages.append(message)
            }
        }
        return (messages, sequences)
    }

    /// The consent property end to end: random event sequences for many shoppers through the worker; every marketing
    /// email on the wire must be permitted, by the same oracle as the model's property test, at the event that
    /// caused it.
    @Test func endToEndNoMarketingEmailWithoutCurrentConsent() async throws {
        try await TestEnvironment.withPipeline(9, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            let doubleOptIn = true
            fixture.extraEnvironment = ["STORE_SETTINGS_FILE": try Self.settingsFile(fixture, #"{"double_opt_in": \#(doubleOptIn)}"#)]
            try await fixture.startWorker()
            let (messages, sequences) = Self.randomConsentStream(events, shoppers: 60, seed: 20_261_125)
            try await fixture.publish(messages)
            let emails = try await Self.emails(fixture)
            var marketing = 0
            for email in emails where email["category"] == .string("marketing") {
                marketing += 1
                let causation = email["causation_id"]?.stringValue ?? ""
                let parts = causation.split(separator: "-")
                guard parts.count == 2, let shopper = Int(parts[0]), let index = Int(parts[1]),
                    let steps = sequences["shopper\(shopper)@example.com"]
                else {
                    Issue.record("a marketing email caused by \(causation)")
                    continue
                }
                #expect(
                    ConsentStep.oraclePermitsMarketing(Array(steps[...index]), doubleOptIn: doubleOptIn, softOptIn: false),
                    "\(email["template"]?.stringValue ?? "") to shopper \(shopper) after \(steps[...index])")
            }
            #expect(marketing >= 5, "the sequences must exercise sending: \(marketing) marketing emails")
        }
    }

    /// `dlq replay` on a real worker, as an operator meets it: a new store's events arrive before its settings are
    /// deployed and are dead-lettered (`unknown_stores: dead_letter`); the settings deployed, the dead letters replayed
    /// — the capture applied and welcomed once; replayed again — nothing more.
    @Test func eventsOfAStoreNotYetConfiguredAreReplayedOnceItIsAndOnlyOnce() async throws {
        try await TestEnvironment.withPipeline(13, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let events = Events(fixture: fixture)
            let before = TestEnvironment.runDirectory.appendingPathComponent(TestEnvironment.unique("settings") + ".json")
            try Data(#"{"stores": {"elsewhere": {}}}"#.utf8).write(to: before)
            fixture.extraEnvironment = ["STORE_SETTINGS_FILE": before.path]
            let (early, _) = try await fixture.startWorker()
            let dlqStart = try await fixture.highWatermarks(fixture.deadLetterTopic)[TopicPartition(topic: fixture.deadLetterTopic, partition: 0)] ?? 0
            let capture = events.capture(id: "cap-1", anonymousID: "anon-1", email: "ana@example.com", marketing: true)
            try await fixture.publish([
                events.track("Product Viewed", id: "view-1", anonymousID: "anon-1", minutes: -1, properties: ["product_id": .string("sku-7")]), capture,
            ])
            try await Self.processed(fixture, 0)
            let dead = try await fixture.readToEnd(fixture.deadLetterTopic)
            #expect(dead.map { $0.header("dlq.reason") } == ["schema_violation", "schema_violation"])
            #expect(dead.allSatisfy { $0.header("dlq.message")?.contains("names a store the settings file does not") == true })
            #expect(try await Self.emails(fixture).isEmpty)

            // The store's settings deployed: the worker restarted with them.
            early.send(SIGTERM)
            #expect(try await early.waitForExit() == 0)
            fixture.extraEnvironment = ["STORE_SETTINGS_FILE": try Self.settingsFile(fixture, #"{"quiet_hours": null, "pressure": []}"#)]
            try await fixture.startWorker()

            func replay(_ arguments: [String]) async throws -> (status: Int32, lines: [JSONValue], stderr: String) {
                let command = try ChildProcess(
                    "CaptureWorker", ["dlq", "replay"] + arguments,
                    environment: [
                        fixture.inputVariable: fixture.inputTopic, "EMAIL_COMMANDS_TOPIC": fixture.commandsTopic, "KAFKA_GROUP_ID": fixture.group,
                        "STORE_SETTINGS_FILE": fixture.extraEnvironment["STORE_SETTINGS_FILE"] ?? "",
                    ])
                let status = try await command.waitForExit(timeout: .seconds(90))
                let lines = try command.stdout.split(separator: "\n").map { try JSONValue.parse(Array($0.utf8)[...]) }
                return (status, lines, command.stderr)
            }
            let replayed = try await replay(["--from-offset", "\(dlqStart)", "--reason", "schema_violation"])
            #expect(replayed.status == 0, "\(replayed.stderr)")
            #expect(replayed.lines.compactMap { $0["message_id"]?.stringValue }.sorted() == ["cap-1", "view-1"], "\(replayed.lines)")
            #expect(replayed.lines.allSatisfy { $0["topic"]?.stringValue == fixture.inputTopic })
            try await Self.processed(fixture, 2)
            var welcomes = try await Self.emails(fixture).filter { $0["template"] == .string("welcome_offer") }
            #expect(welcomes.count == 1 && welcomes.first?["causation_id"] == .string("cap-1"), "\(welcomes)")
            #expect(welcomes.first?["data"]?["viewed_products"] == .array([.string("sku-7")]), "the replayed view, applied before the capture")

            // Replayed again (an operator's second try): a duplicate to the worker.
            let again = try await replay(["--message-id", "cap-1"])
            #expect(again.status == 0 && again.lines.count == 1, "\(again.stderr) \(again.lines)")
            try await Self.processed(fixture, 2)
            welcomes = try await Self.emails(fixture).filter { $0["template"] == .string("welcome_offer") }
            #expect(welcomes.count == 1, "one welcome, however often it is replayed")
            #expect(try await fixture.readToEnd(fixture.deadLetterTopic).count == 2, "and no new dead letter")
        }
    }
}
