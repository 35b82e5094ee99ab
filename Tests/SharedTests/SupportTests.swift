import Testing

@testable import Shared

@Suite struct SupportTests {
    @Test func backoffStaysUnderItsCeiling() {
        let backoff = Backoff(base: .milliseconds(100), cap: .seconds(2))
        for attempt in 0..<40 {
            let ceiling = min(Duration.seconds(2), .milliseconds(100) * (1 << min(attempt, 30)))
            #expect(backoff.delay(attempt: attempt) <= ceiling)
        }
    }

    @Test func topicsAreRenamedByTheirVariablesAndChecked() throws {
        let topics = try Topics(environment: Environment(["SHOPPER_EVENTS_TOPIC": "prod.shopper-events"]))
        #expect(topics.shopperEvents == "prod.shopper-events")
        #expect(topics.checkoutEvents == "checkout-events")
        #expect(Topics.deadLetter(of: topics.shopperEvents) == "prod.shopper-events-dlq")
        #expect(throws: ConfigurationError.self) { try Topics(environment: Environment(["EMAIL_COMMANDS_TOPIC": "no spaces"])) }
    }

    @Test func nextOffsetsAreTheHighestReadPlusOne() {
        let partition = TopicPartition(topic: "t", partition: 0)
        let other = TopicPartition(topic: "t", partition: 1)
        let messages = [(partition, 4), (partition, 7), (other, 0)].map {
            KafkaMessage(topicPartition: $0.0, offset: Int64($0.1), key: nil, value: [], headers: [], timestampMilliseconds: nil)
        }
        #expect(messages.nextOffsets == [partition: 8, other: 1])
    }

    @Test func workerConfigurationDefaultsFollowTheContract() throws {
        let descriptor = WorkerDescriptor(
            name: "CaptureWorker", component: "capture", defaultGroupID: "rapport-capture", defaultHTTPPort: 8081,
            inputTopic: { $0.shopperEvents }, migrations: { [] })
        let configuration = try WorkerConfiguration(descriptor: descriptor, environment: Environment([:]))
        #expect(configuration.consumer.groupID == "rapport-capture")
        #expect(configuration.consumer.kafka.bootstrapServers == ["localhost:9092"])
        #expect(configuration.postgres.url == "postgresql://localhost:5432/rapport")
        #expect(configuration.httpPort == 8081)
        #expect(configuration.logLevel == .info)
        #expect(configuration.logFormat == .json)
        #expect(configuration.drainTimeout == .seconds(20))
    }
}
