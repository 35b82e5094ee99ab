import Foundation
import KafkaTesting
import Logging
import Shared
import Testing

/// What a broker refuses for good: the pipeline in-process against real PostgreSQL and a mock cluster of its own,
/// because the test injects the broker's `MSG_SIZE_TOO_LARGE` (a topic whose `max.message.bytes` is lower than the
/// producer's limit) into Produce requests.
@Suite(.serialized) struct PublishRefusalTests {
    /// One command per event, to `topic`.
    struct OneCommand: PipelineHandler {
        let topic: String
        func handle(_ events: [InboundEvent<SegmentMessage>], connection: PostgresConnection) throws -> [OutboundCommand] {
            events.map { event in
                event.caused(
                    OutboundCommand(
                        topic: topic, key: event.message.shopperKey, name: "one", storeID: event.message.storeID,
                        causationID: event.message.messageID, value: Array(#"{"command_id":"x","body":"\#(String(repeating: "c", count: 2000))"}"#.utf8)))
            }
        }
    }

    @Test func aRefusedDeadLetterGoesAsASmallerCopyAndARefusedCommandBecomesADeadLetter() async throws {
        let logger = TestEnvironment.logger
        let cluster = try MockKafkaCluster(brokers: 1, logger: logger)
        for topic in ["in", "in-dlq", "out"] { try cluster.createTopic(topic, partitions: 1) }
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = [cluster.bootstrapServers]
        let input = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: logger)
        let event =
            #"{"type":"track","event":"Product Viewed","messageId":"m-1","timestamp":"2026-11-25T05:00:00Z","anonymousId":"a","context":{"storeId":"s"},"properties":{}}"#
        let bad = Array(("{" + String(repeating: "b", count: 4000)).utf8)
        _ = try await input.send([
            KafkaOutboundMessage(topic: "in", key: Array("s/a".utf8), value: Array(event.utf8)),
            KafkaOutboundMessage(topic: "in", key: Array("s/bad".utf8), value: bad, headers: [KafkaHeader(key: "origin", text: "test")]),
        ]).map { try $0.get() }

        try await TestEnvironment.withFreshDatabase { url in
            let descriptor = WorkerDescriptor(
                name: "RefusalTest", component: "refusal", defaultGroupID: "refusal", defaultHTTPPort: 0, inputTopic: { _ in "in" },
                migrations: { [] })
            let postgres = TestEnvironment.postgres(url: url)
            defer { postgres.close() }
            try await WorkerApp.migrate(descriptor: descriptor, postgres: postgres, logger: logger, timeout: .seconds(30))
            let rebalance = PartitionRebalanceListener(postgres: postgres, groupID: "refusal", logger: logger)
            var consumerConfiguration = KafkaConsumerConfiguration(kafka: kafka, groupID: "refusal")
            consumerConfiguration.sessionTimeout = .seconds(6)
            consumerConfiguration.heartbeatInterval = .milliseconds(500)
            let consumer = try KafkaConsumer(configuration: consumerConfiguration, rebalanceListener: rebalance, logger: logger)
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: logger)
            let health = WorkerHealth(livenessWindow: .seconds(30))
            var configuration = PipelineConfiguration(worker: "RefusalTest", groupID: "refusal", inputTopic: "in")
            configuration.backoff = Backoff(base: .milliseconds(50), cap: .milliseconds(200))
            let pipeline = Pipeline(
                configuration: configuration, consumer: consumer, rebalance: rebalance, producer: producer, postgres: postgres,
                handler: OneCommand(topic: "out"), health: health, logger: logger)
            // The broker refuses the pipeline's first two produce requests (the command's and the dead letter's) as too
            // large for their topics.
            cluster.pushRequestErrors(.produce, [.messageSizeTooLarge, .messageSizeTooLarge])
            let running = Task { try await pipeline.run() }

            let reader = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka, groupID: "reader"), logger: logger)
            try reader.assign([TopicPartition(topic: "in-dlq", partition: 0): -2, TopicPartition(topic: "out", partition: 0): -2])
            var read: [KafkaMessage] = []
            try await eventually("two dead letters", timeout: .seconds(60)) {
                read += try await reader.poll(maxMessages: 100, maxWait: .milliseconds(200))
                return read.count { $0.topicPartition.topic == "in-dlq" } >= 2
            }
            // Then until the pipeline has nothing left (the outbox empty), stopped, and everything read to the high
            // watermarks: a third dead letter or a command published late would be seen.
            try await eventually("the outbox empty", timeout: .seconds(60)) {
                try await postgres.withConnection { try $0.query("SELECT count(*) FROM rapport_outbox").first?.decode(Int.self, at: 0) } == 0
            }
            running.cancel()
            _ = try? await running.value
            try await reader.close()
            let all = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka, groupID: "reader-all"), logger: logger)
            read = try await all.readToEnd(
                [TopicPartition(topic: "in-dlq", partition: 0), TopicPartition(topic: "out", partition: 0)], from: nil, timeout: .seconds(30))
            try await all.close()

            let dead = read.filter { $0.topicPartition.topic == "in-dlq" }
            #expect(dead.count == 2)
            #expect(read.allSatisfy { $0.topicPartition.topic == "in-dlq" }, "the refused command was not published as a command")
            let command = try #require(dead.first { $0.header("dlq.command.topic") == "out" })
            #expect(command.header("dlq.reason") == "handler_failure")
            #expect(command.header("dlq.message")?.contains("MSG_SIZE_TOO_LARGE") == true)
            #expect(command.header("dlq.command.id") == CommandID.make(store: "s", causation: "m-1", name: "one"))
            #expect(command.header("dlq.source.topic") == "in" && command.header("dlq.source.offset") == "0")
            let letter = try #require(dead.first { $0.header("dlq.reason") == "malformed_json" })
            #expect(letter.header("dlq.truncated") == "true")
            #expect(letter.header("dlq.original.size") == String(bad.count))
            #expect(letter.value.count < bad.count && Array(letter.value) == Array(bad.prefix(letter.value.count)), "half its weight, the first bytes")
            #expect(letter.header("origin") == "test")
            let left = try await postgres.withConnection { try $0.query("SELECT count(*) FROM rapport_outbox").first?.decode(Int.self, at: 0) }
            #expect(left == 0, "both delivered and deleted, nothing parked")
        }
        withExtendedLifetime(cluster) {}
    }
}
