import Foundation
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
        #expect(configuration.transactionsPerBatch == 3)
        #expect(configuration.deduplicationWindow == .seconds(30 * 86_400))
        let tuned = try WorkerConfiguration(
            descriptor: descriptor, environment: Environment(["BATCH_TRANSACTIONS": "1", "DEDUPLICATION_WINDOW_DAYS": "7"]))
        #expect(tuned.transactionsPerBatch == 1 && tuned.deduplicationWindow == .seconds(7 * 86_400))
        for (name, value) in [("BATCH_TRANSACTIONS", "0"), ("BATCH_TRANSACTIONS", "many"), ("DEDUPLICATION_WINDOW_DAYS", "0")] {
            let error = #expect(throws: ConfigurationError.self) { try WorkerConfiguration(descriptor: descriptor, environment: Environment([name: value])) }
            #expect(error?.setting == name)
        }
    }

    @Test func commandIDsAreFNV1a128OfTheLengthPrefixedParts() {
        // Expected values computed independently (Python, big integers) from the definition in CommandID.
        #expect(CommandID.make(store: "store-1", causation: "msg-42", name: "welcome_offer") == "e769e376-c9de-b05b-fb54-7c551a3e95e1")
        #expect(CommandID.make(store: "", causation: "", name: "") == "15915375-576d-2f38-9a93-8dc3a9940c9d")
        #expect(CommandID.make(store: "a", causation: "bc", name: "x") != CommandID.make(store: "ab", causation: "c", name: "x"))
    }

    @Test func rfc3339IsWrittenInUTCWithMilliseconds() throws {
        #expect(Date(timeIntervalSince1970: 1_795_586_095.25).rfc3339 == "2026-11-25T05:54:55.250Z")
        #expect(Date(timeIntervalSince1970: 0.0004).rfc3339 == "1970-01-01T00:00:00.000Z")
        let now = Date()
        let parsed = try #require(Date(rfc3339: now.rfc3339))
        #expect(abs(parsed.timeIntervalSince(now)) < 0.001)
    }
}
