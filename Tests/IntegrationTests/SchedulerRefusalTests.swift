import Foundation
import KafkaTesting
import Shared
import Testing

/// The scheduler's commands when Kafka refuses them for good, settled as the pipeline's are (``OutboxPublisher``): a
/// refused command is dead-lettered (`handler_failure`) on the worker's dead-letter topic, and a row no form of which
/// the broker takes is parked and counted. A ReceiptWorker process — its scheduler looking every 100 ms, deciding
/// journey steps the test plants — in ``OutboxFailureTests/World``: a mock cluster of the test's own, whose Produce
/// requests the test makes fail (the only ones the worker sends: no event is published to its input).
@Suite(.serialized) struct SchedulerRefusalTests {
    /// Brings the world's database to ReceiptWorker's schema (once) and plants a thank-you step due now for a
    /// consenting contact of the world's store, caused by event `m-<n>`.
    static func plantStep(_ world: OutboxFailureTests.World, _ n: Int) async throws {
        if n == 1 {
            let migrate = try ChildProcess("ReceiptWorker", ["migrate"], environment: ["DATABASE_URL": world.databaseURL])
            #expect(try await migrate.waitForExit() == 0)
        }
        let (store, group, email) = (world.store, world.group, "shopper-\(n)@example.com")
        let postgres = TestEnvironment.postgres(url: world.databaseURL, poolSize: 1)
        defer { postgres.close() }
        try await postgres.withTransaction { connection in
            try connection.execute(
                """
                INSERT INTO rapport_contacts (store_id, email, transactional_ok, marketing_consent, consent_level)
                VALUES (\(store), \(email), true, true, 'single')
                """)
            let step = ScheduledStep(
                storeID: store, journey: "orientation", template: "thank_you", shopperKey: "\(store)/s-\(n)", email: email, causationID: "m-\(n)",
                orderID: nil, data: [:], dueAt: Date())
            try StepStore.schedule([step], group: group, connection: connection)
        }
    }

    /// The command id of the step planted as `n`, once it was sent.
    static func commandID(_ world: OutboxFailureTests.World, _ n: Int) async throws -> String? {
        let (store, causation) = (world.store, "m-\(n)")
        let postgres = TestEnvironment.postgres(url: world.databaseURL, poolSize: 1)
        defer { postgres.close() }
        return try await postgres.withConnection { connection in
            try connection.query("SELECT command_id FROM rapport_scheduled_steps WHERE store_id = \(store) AND causation_id = \(causation)")
                .first?.decode("command_id", as: String?.self)
        } ?? nil
    }

    /// A ReceiptWorker reading `in` (nothing arrives there), its scheduler on, the world's store without caps or quiet
    /// hours.
    static func startWorker(_ world: OutboxFailureTests.World) throws -> ChildProcess {
        let settings = TestEnvironment.runDirectory.appendingPathComponent(TestEnvironment.unique("settings") + ".json")
        try Data(#"{"stores": {"\#(world.store)": {"pressure": [], "quiet_hours": null}}}"#.utf8).write(to: settings)
        return try world.startWorker(
            "ReceiptWorker", ["CHECKOUT_EVENTS_TOPIC": "in", "STORE_SETTINGS_FILE": settings.path, "SCHEDULER_INTERVAL_MS": "100"])
    }

    /// Until every planted step is sent and no outbox row waits (parked rows do not; a row left under its lease does).
    static func waitUntilSettled(_ world: OutboxFailureTests.World) async throws {
        try await eventually("every step sent and the outbox settled", timeout: .seconds(60)) {
            guard try await world.count("SELECT count(*) FROM rapport_scheduled_steps WHERE state <> 'sent'") == 0 else { return false }
            return try await world.count("SELECT count(*) FROM rapport_outbox WHERE parked_at IS NULL") == 0
        }
    }

    /// The sum of `name`'s series on the worker's `/metrics` whose labels include every one of `labels`
    /// (`key="value"`, in any order): 0 when there is none.
    static func total(_ port: Int, _ name: String, _ labels: [String] = []) async -> Double {
        let body = await probe(port, "/metrics")?.body ?? ""
        return body.split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
            .filter { line in labels.allSatisfy { line.prefix { $0 != " " }.contains($0) } }
            .compactMap { Double($0.split(separator: " ").last ?? "") }
            .reduce(0, +)
    }

    @Test func aScheduledCommandTheBrokerRefusesForGoodIsDeadLetteredNotParked() async throws {
        try await OutboxFailureTests.withWorld { world in
            try await Self.plantStep(world, 1)
            // The broker refuses the worker's first Produce request — the scheduler's command — as too large for its topic.
            world.cluster.pushRequestErrors(.produce, [.messageSizeTooLarge])
            let worker = try Self.startWorker(world)
            let port = try await worker.probePort()
            try await Self.waitUntilSettled(world)
            let command = try #require(try await Self.commandID(world, 1))

            #expect(try await world.count("SELECT count(*) FROM rapport_outbox") == 0, "delivered as a dead letter and deleted, nothing parked")
            #expect(try await world.read("out").isEmpty, "the refused command never went out as a command")
            let dead = try await world.read("in-dlq")
            #expect(dead.count == 1)
            let letter = try #require(dead.first)
            #expect(letter.header("dlq.reason") == "handler_failure")
            #expect(letter.header("dlq.command.topic") == "out" && letter.header("dlq.command.id") == command)
            #expect(letter.header("dlq.message")?.contains("MSG_SIZE_TOO_LARGE") == true)
            #expect(letter.header("dlq.worker") == "ReceiptWorker")
            #expect(letter.header("dlq.source.topic") == Scheduler.source.topic && letter.header("dlq.source.offset") == "unknown")
            #expect((try? JSONValue.parse(letter.value))?["command_id"]?.stringValue == command, "the command itself, whole")
            #expect(await Self.total(port, "rapport_publish_failures_total", [#"topic="out""#, #"disposition="permanent_for_message""#]) == 1)
            #expect(await Self.total(port, "rapport_outbox_parked_total") == 0)
            #expect(worker.stdout.contains("command refused; dead-lettering it"))
            #expect(worker.isRunning)
        }
    }

    @Test func aScheduledCommandNoFormOfWhichKafkaTakesIsParkedCountedAndTheSchedulerMovesOn() async throws {
        try await OutboxFailureTests.withWorld { world in
            try await Self.plantStep(world, 1)
            // Every Produce request refused as too large, however small: the command, its dead letter and each
            // truncated copy of that.
            world.cluster.pushRequestErrors(.produce, Array(repeating: .messageSizeTooLarge, count: 40))
            let worker = try Self.startWorker(world)
            let port = try await worker.probePort()
            try await eventually("the row parked", timeout: .seconds(60)) {
                try await world.count("SELECT count(*) FROM rapport_outbox WHERE parked_at IS NOT NULL") == 1
            }
            try await world.useUpRefusals(40)

            // A later step goes out: the scheduler moved on past what it parked.
            try await Self.plantStep(world, 2)
            try await Self.waitUntilSettled(world)
            let (first, second) = (try #require(try await Self.commandID(world, 1)), try #require(try await Self.commandID(world, 2)))
            let parked = try #require(
                try await world.query("SELECT topic, parked_reason, command_id FROM rapport_outbox WHERE parked_at IS NOT NULL").first)
            // The row as it was committed (the command, for an operator to republish), with the last refusal: its dead
            // letter's, in every form.
            let (topic, reason, parkedCommand) = try parked.decode((String, String?, String?).self)
            #expect(topic == "out" && parkedCommand == first)
            #expect(reason?.contains("MSG_SIZE_TOO_LARGE") == true)
            #expect(try await world.count("SELECT count(*) FROM rapport_outbox") == 1, "the parked row kept, nothing else left")
            let sent = try await world.read("out").compactMap { (try? JSONValue.parse($0.value))?["command_id"]?.stringValue }
            #expect(sent == [second], "the first step's command never went out")
            #expect(try await world.read("in-dlq").isEmpty, "and no form of its dead letter did")
            #expect(await Self.total(port, "rapport_outbox_parked_total") == 1)
            #expect(await Self.total(port, "rapport_publish_failures_total", [#"topic="out""#, #"disposition="permanent_for_message""#]) == 1)
            #expect(
                await Self.total(port, "rapport_publish_failures_total", [#"topic="in-dlq""#, #"disposition="permanent_for_message""#]) >= 1,
                "its dead letter refused too")
            #expect(worker.stdout.contains("outbox row parked: no form of it can be published"))
            #expect(worker.isRunning)
        }
    }
}
