import KafkaTesting
import Shared
import Testing

/// Producer failures come back as typed errors, one per message, never as a hang or a crash. These tests host their
/// own mock cluster in-process, because they inject broker errors into it.
@Suite struct KafkaProducerErrorTests {
    let cluster: MockKafkaCluster
    let producer: KafkaProducer

    init() throws {
        cluster = try MockKafkaCluster(brokers: 1, logger: TestEnvironment.logger)
        try cluster.createTopic("errors", partitions: 1)
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = [cluster.bootstrapServers]
        var configuration = KafkaProducerConfiguration(kafka: kafka)
        configuration.deliveryTimeout = .seconds(5)
        configuration.linger = .milliseconds(0)
        producer = try KafkaProducer(configuration: configuration, logger: TestEnvironment.logger)
    }

    private func message(_ text: String) -> KafkaOutboundMessage {
        KafkaOutboundMessage(topic: "errors", key: Array("k".utf8), value: Array(text.utf8))
    }

    @Test func aPermanentBrokerErrorIsTheMessagesTypedError() async throws {
        cluster.pushRequestErrors(.produce, [.topicAuthorizationFailed])
        let results = try await producer.send([message("refused")])
        let error = try #require(results.first.flatMap { if case .failure(let error) = $0 { error } else { nil } })
        #expect(error.code == .topicAuthorizationFailed)
        #expect(!error.isRetriable)
    }

    @Test func transientBrokerErrorsAreRetriedByTheIdempotentProducer() async throws {
        let leaderMoved = KafkaError.Code(rawValue: 6)  // NOT_LEADER_FOR_PARTITION
        cluster.pushRequestErrors(.produce, [leaderMoved, leaderMoved])
        let results = try await producer.send([message("a"), message("b")])
        let offsets = try results.map { try $0.get().offset }
        #expect(offsets.count == 2)
        #expect(offsets[1] == offsets[0] + 1, "retries kept the order and wrote each message once")
    }

    @Test func anOversizedMessageFailsAloneWhileTheRestOfTheBatchIsDelivered() async throws {
        let huge = KafkaOutboundMessage(topic: "errors", key: nil, value: Array(repeating: 0x61, count: 2_000_000))
        let results = try await producer.send([message("before"), huge, message("after")])
        #expect((try? results[0].get()) != nil)
        #expect((try? results[2].get()) != nil)
        guard case .failure(let error) = results[1] else {
            Issue.record("a 2 MB message was accepted")
            return
        }
        #expect(error.code == .messageSizeTooLarge)
    }

    @Test func anUnreachableClusterTimesOutAsARetriableError() async throws {
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = ["127.0.0.1:1"]  // nothing listens there
        var configuration = KafkaProducerConfiguration(kafka: kafka)
        configuration.deliveryTimeout = .seconds(1)
        let stranded = try KafkaProducer(configuration: configuration, logger: TestEnvironment.logger)
        let results = try await stranded.send([KafkaOutboundMessage(topic: "errors", key: nil, value: [1])])
        guard case .failure(let error) = results[0] else {
            Issue.record("delivered to a cluster that does not exist")
            return
        }
        #expect(error.code == .messageTimedOut)
        #expect(error.isRetriable)
    }
}

extension KafkaProducerErrorTests {
    @Test func anIllegalTopicNameFailsItsMessageWithoutCrashing() async throws {
        let illegal = String(repeating: "t", count: 600)  // librdkafka refuses names over 512 bytes
        let results = try await producer.send([KafkaOutboundMessage(topic: illegal, key: nil, value: [1]), message("fine")])
        #expect((try? results[1].get()) != nil)
        guard case .failure = results[0] else {
            Issue.record("a 600-character topic name was accepted")
            return
        }
    }
}

/// The consumer's copy of a batch: keys and values of every shape come back byte for byte.
@Suite struct KafkaConsumerCopyTests {
    @Test func emptyAndMissingKeysAndValuesSurviveTheBatchCopy() async throws {
        let cluster = try MockKafkaCluster(brokers: 1, logger: TestEnvironment.logger)
        try cluster.createTopic("shapes", partitions: 1)
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = [cluster.bootstrapServers]
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: TestEnvironment.logger)
        let shapes: [([UInt8]?, [UInt8])] = [([], []), (nil, []), ([], [1]), (nil, [2, 3]), ([4], []), (Array("k".utf8), Array("v".utf8))]
        let sent = try await producer.send(shapes.map { KafkaOutboundMessage(topic: "shapes", key: $0.0, value: $0.1) })
        #expect(sent.allSatisfy { (try? $0.get()) != nil })

        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka, groupID: "shapes"), logger: TestEnvironment.logger)
        try consumer.assign([TopicPartition(topic: "shapes", partition: 0): -2])  // from the beginning
        var received: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while received.count < shapes.count, ContinuousClock.now < deadline {
            received += try await consumer.poll(maxMessages: 100, maxWait: .milliseconds(500))
        }
        try #require(received.count == shapes.count)
        for (message, shape) in zip(received, shapes) {
            #expect(message.key.map(Array.init) == shape.0)
            #expect(Array(message.value) == shape.1)
        }
        try await consumer.close()
        withExtendedLifetime(cluster) {}
    }
}
