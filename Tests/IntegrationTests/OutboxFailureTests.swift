import Foundation
import KafkaTesting
import Shared
import Testing

/// The outbox when Kafka refuses: a row no form of which the broker takes is parked and the partition moves on; a
/// fatal producer error ends the worker and the outbox keeps what was not delivered, for the next process. An
/// EchoWorker process against real PostgreSQL and a mock cluster of the test's own — the test injects the broker's
/// errors into Produce requests, which the shared embedded Kafka's other users must never see.
@Suite(.serialized) struct OutboxFailureTests {
    /// A private cluster with the worker's topics (one partition each), a producer for the input, and a fresh database.
    final class World: @unchecked Sendable {
        // `@unchecked Sendable`: used by one test at a time.
        let cluster: MockKafkaCluster
        let kafka: KafkaConfiguration
        let producer: KafkaProducer
        let databaseURL: String
        let group = TestEnvironment.unique("group")
        let store = TestEnvironment.unique("store")
        var workers: [ChildProcess] = []

        init(databaseURL: String) throws {
            cluster = try MockKafkaCluster(brokers: 1, logger: TestEnvironment.logger)
            for topic in ["in", "in-dlq", "out", "recs", "junk"] { try cluster.createTopic(topic, partitions: 1) }
            var kafka = KafkaConfiguration()
            kafka.bootstrapServers = [cluster.bootstrapServers]
            self.kafka = kafka
            producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: TestEnvironment.logger)
            self.databaseURL = databaseURL
        }

        func event(_ id: String) -> KafkaOutboundMessage {
            let json =
                #"{"type":"track","event":"Product Viewed","messageId":"\#(id)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"a","context":{"storeId":"\#(store)"},"properties":{}}"#
            return KafkaOutboundMessage(topic: "in", key: Array("\(store)/a".utf8), value: Array(json.utf8))
        }

        func publish(_ ids: [String]) async throws {
            _ = try await producer.send(ids.map(event)).map { try $0.get() }
        }

        /// Starts `executable` on the world's cluster, database and group, with `extra` settings of its own.
        @discardableResult
        func startWorker(_ executable: String = "EchoWorker", _ extra: [String: String] = [:]) throws -> ChildProcess {
            let worker = try ChildProcess(
                executable, [],
                environment: [
                    "KAFKA_BROKERS": cluster.bootstrapServers, "DATABASE_URL": databaseURL, "SHOPPER_EVENTS_TOPIC": "in",
                    "EMAIL_COMMANDS_TOPIC": "out", "RECOMMENDATION_COMMANDS_TOPIC": "recs", "KAFKA_GROUP_ID": group, "HTTP_PORT": "0",
                    "LOG_FORMAT": "json", "BATCH_WAIT_MS": "50", "KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
                ].merging(extra) { _, new in new })
            workers.append(worker)
            return worker
        }

        func query(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) async throws -> PostgresRows {
            let client = TestEnvironment.postgres(url: databaseURL, poolSize: 1)
            defer { client.close() }
            return try await client.withConnection { try $0.query(sql, parameters) }
        }

        func count(_ sql: String) async throws -> Int {
            try await query(sql).first?.decode(Int.self, at: 0) ?? -1
        }

        /// Until PostgreSQL's offset for `in` reaches `offset` and no outbox row waits (parked rows do not wait).
        func waitUntilConsumed(to offset: Int64) async throws {
            try await eventually("the input consumed to \(offset) and the outbox drained", timeout: .seconds(90)) {
                let recorded =
                    try await query("SELECT next_offset FROM rapport_consumer_offsets WHERE group_id = $1 AND topic = 'in'", [group])
                    .first?.decode(Int64.self, at: 0) ?? 0
                guard recorded >= offset else { return false }
                return try await count("SELECT count(*) FROM rapport_outbox WHERE parked_at IS NULL") == 0
            }
        }

        /// Every message of `topic` up to its high watermark now.
        func read(_ topic: String) async throws -> [KafkaMessage] {
            let reader = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(kafka: kafka, groupID: TestEnvironment.unique("reader")), logger: TestEnvironment.logger)
            let messages = try await reader.readToEnd([TopicPartition(topic: topic, partition: 0)], from: nil, timeout: .seconds(30))
            try await reader.close()
            return messages
        }

        /// Uses up the rest of the Produce errors pushed onto the cluster (at most `count`), one request each, by a
        /// producer of the test's own.
        func useUpRefusals(_ count: Int) async throws {
            var refused = 0
            while case .failure = try await producer.send([KafkaOutboundMessage(topic: "junk", key: nil, value: [1])])[0] {
                refused += 1
                try #require(refused < count)
            }
        }

        func causes(_ messages: [KafkaMessage]) -> [String] {
            messages.compactMap { (try? JSONValue.parse($0.value))?["causation_id"]?.stringValue }
        }

        func stop() async {
            for worker in workers where worker.isRunning { worker.send(SIGTERM) }
            for worker in workers { _ = try? await worker.waitForExit(timeout: .seconds(30)) }
        }
    }

    static func withWorld(_ body: (World) async throws -> Void) async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let world = try World(databaseURL: url)
            do {
                try await body(world)
            } catch {
                for worker in world.workers { print("--- worker log tail:\n\(worker.stdout.suffix(3000))\n\(worker.stderr.suffix(2000))") }
                await world.stop()
                throw error
            }
            await world.stop()
            withExtendedLifetime(world.cluster) {}
        }
    }

    @Test func aRowNoFormOfWhichKafkaTakesIsParkedThePartitionMovesOnAndNoOwnerRelaysIt() async throws {
        try await Self.withWorld { world in
            try await world.publish(["m-1"])
            // The broker refuses every Produce request as too large, however small: the echo, then its dead letter and
            // each truncated copy of it.
            world.cluster.pushRequestErrors(.produce, Array(repeating: .messageSizeTooLarge, count: 40))
            let first = try world.startWorker()
            let port = try await first.probePort()
            try await eventually("the row parked", timeout: .seconds(60)) {
                try await world.count("SELECT count(*) FROM rapport_outbox WHERE parked_at IS NOT NULL") == 1
            }
            try await world.useUpRefusals(40)

            try await world.publish(["m-2", "m-3"])
            try await world.waitUntilConsumed(to: 3)
            #expect(first.isRunning)
            let parked = try #require(
                try await world.query("SELECT topic, parked_reason, command_id FROM rapport_outbox WHERE parked_at IS NOT NULL").first)
            // The row as it was committed (the echo, for an operator to republish once the topic takes it), with the
            // last refusal: the echo became a dead letter, and that was refused in every form.
            #expect(try parked.decode(String.self, at: 0) == "out")
            #expect(try parked.decode(String.self, at: 1)?.contains("MSG_SIZE_TOO_LARGE") == true)
            #expect(try parked.decode(String.self, at: 2) == CommandID.make(store: world.store, causation: "m-1", name: "echo"))
            try await eventually("the parked gauge", timeout: .seconds(30)) { await metric(port, "rapport_outbox_parked") == 1 }
            #expect(first.stdout.contains("outbox row parked: no form of it can be published"))

            // The partition's next owner relays what waits, never what is parked.
            first.send(SIGTERM)
            #expect(try await first.waitForExit() == 0)
            try world.startWorker()
            try await world.publish(["m-4"])
            try await world.waitUntilConsumed(to: 4)
            #expect(world.causes(try await world.read("out")) == ["m-2", "m-3", "m-4"], "m-1's echo never went out")
            #expect(try await world.read("in-dlq").isEmpty, "and no form of its dead letter did")
            #expect(try await world.count("SELECT count(*) FROM rapport_outbox") == 1, "the parked row kept, for an operator")
            #expect(try await world.count("SELECT count(*) FROM echo_effects") == 4)
        }
    }

    @Test func aFatalProducerErrorEndsTheWorkerAndTheNextProcessPublishesWhatTheOutboxKept() async throws {
        try await Self.withWorld { world in
            try await world.publish(["m-1", "m-2", "m-3"])
            // OUT_OF_ORDER_SEQUENCE_NUMBER on the idempotent producer's first request: the head of the line lost, so
            // librdkafka raises its fatal error — the producer cannot go on without risking a duplicate or a gap.
            world.cluster.pushRequestErrors(.produce, [KafkaError.Code(rawValue: 45)])
            let doomed = try world.startWorker()
            let status = try await doomed.waitForExit(timeout: .seconds(60))
            #expect(status != 0, "a worker whose producer is unusable exits for its supervisor to restart it")
            #expect(doomed.stderr.contains("OUT_OF_ORDER_SEQUENCE_NUMBER, fatal"), "\(doomed.stderr.suffix(1000))")
            #expect(!doomed.stdout.contains("cannot publish"), "not taken for a setup the operator must fix")
            #expect(try await world.count("SELECT count(*) FROM echo_effects") == 3, "the batch was committed before the publish")
            #expect(try await world.count("SELECT count(*) FROM rapport_outbox WHERE parked_at IS NULL") == 3, "and its commands kept")
            #expect(try await world.read("out").isEmpty)

            let next = try world.startWorker()
            try await world.publish(["m-4"])
            try await world.waitUntilConsumed(to: 4)
            let echoes = try await world.read("out")
            #expect(world.causes(echoes) == ["m-1", "m-2", "m-3", "m-4"], "each once, in order")
            #expect(Set(echoes.map { (try? JSONValue.parse($0.value))?["command_id"]?.stringValue }).count == 4)
            #expect(try await world.count("SELECT count(*) FROM echo_effects") == 4, "nothing applied twice")
            #expect(try await world.read("in-dlq").isEmpty)
            #expect(next.isRunning)
        }
    }
}
