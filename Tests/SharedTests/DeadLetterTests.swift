import Foundation
import Testing

@testable import Shared

/// Dead letters that must fit, the publish-error classification, and the digest truncated copies carry.
struct DeadLetterTests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func sha256MatchesTheFIPSVectors(input: String, digest: String) {
        #expect(SHA256.hex(Array(input.utf8)) == digest)
    }

    @Test func sha256OfAMillionAs() {
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    private func deadLetter(valueBytes: Int, headers: [KafkaHeader] = [KafkaHeader(key: "origin", text: "test")]) -> DeadLetter {
        let source = KafkaMessage(
            topicPartition: TopicPartition(topic: "in", partition: 2), offset: 41, key: ArraySlice("store/shopper".utf8),
            value: ArraySlice([UInt8](repeating: 0x7B, count: valueBytes)), headers: headers, timestampMilliseconds: nil)
        return DeadLetter(source: source, failure: DecodeFailure(.tooLarge, "message of \(valueBytes) bytes is over the 1048576-byte limit"))
    }

    @Test func aDeadLetterThatFitsGoesWhole() {
        let message = deadLetter(valueBytes: 1000).outbound(topic: "in-dlq", worker: "W", failedAt: Date(), limit: 10_000)
        #expect(message.value.count == 1000)
        #expect(message.headers.first { $0.key == "dlq.truncated" } == nil)
        #expect(message.header("origin") == "test")
    }

    @Test func aDeadLetterOverTheLimitIsTheFirstBytesThatFitWithSizeAndDigest() {
        let letter = deadLetter(valueBytes: 2 << 20)
        let limit = (1 << 20) + DeadLetter.headerAllowance
        let message = letter.outbound(topic: "in-dlq", worker: "W", failedAt: Date(), limit: limit)
        #expect(message.wireSize <= limit)
        #expect(message.wireSize > limit - 64, "as much of the value as fits")
        #expect(message.header("dlq.truncated") == "true")
        #expect(message.header("dlq.original.size") == String(2 << 20))
        #expect(message.header("dlq.original.sha256") == SHA256.hex(letter.source.value))
        #expect(message.header("dlq.reason") == "too_large" && message.header("origin") == "test" && message.key == Array("store/shopper".utf8))
        #expect(message.value == Array(letter.source.value.prefix(message.value.count)))

        // Cut again (a topic that allows less): the original's size and digest stay, the value shrinks.
        let half = message.truncatedDeadLetter(toFit: message.wireSize / 2)
        #expect(half.map { $0.wireSize <= message.wireSize / 2 } == true)
        #expect(half?.header("dlq.original.sha256") == message.header("dlq.original.sha256"))
        #expect(half?.headers.count { $0.key == "dlq.truncated" } == 1)
    }

    @Test func headersTooLargeToKeepAreDroppedAndNothingFitsGivesNil() {
        let heavy = [KafkaHeader(key: "blob", value: [UInt8](repeating: 1, count: 5000))]
        let message = deadLetter(valueBytes: 100, headers: heavy).outbound(topic: "in-dlq", worker: "W", failedAt: Date(), limit: 2000)
        #expect(message.wireSize <= 2000)
        #expect(message.header("dlq.original.headers") == "dropped" && message.header("blob") == nil)
        #expect(message.value.count == 100, "the value fits once the headers are gone")
        #expect(message.truncatedDeadLetter(toFit: 100) == nil)
    }

    @Test(arguments: [
        (KafkaError.Code.messageSizeTooLarge, KafkaError.PublishDisposition.permanentForMessage),
        (KafkaError.Code(rawValue: 87), .permanentForMessage),  // INVALID_RECORD
        (KafkaError.Code(rawValue: 18), .permanentForMessage),  // RECORD_LIST_TOO_LARGE
        (.unknownTopicOrPartition, .permanentForWorker),
        (.unknownTopic, .permanentForWorker),
        (.topicAuthorizationFailed, .permanentForWorker),
        (KafkaError.Code(rawValue: 31), .permanentForWorker),  // CLUSTER_AUTHORIZATION_FAILED
        (KafkaError.Code(rawValue: -169), .permanentForWorker),  // _AUTHENTICATION
        (.messageTimedOut, .retriable),
        (.queueFull, .retriable),
        (KafkaError.Code(rawValue: -195), .retriable),  // _TRANSPORT
        (KafkaError.Code(rawValue: 6), .retriable),  // NOT_LEADER_FOR_PARTITION
        (KafkaError.Code(rawValue: 19), .retriable),  // NOT_ENOUGH_REPLICAS
        (.fatal, .fatal),
        (KafkaError.Code(rawValue: 77), .permanentForWorker),  // no table names it, not retriable: loud, never skipped
    ])
    func everyPublishErrorHasADisposition(code: KafkaError.Code, disposition: KafkaError.PublishDisposition) {
        #expect(KafkaError(code: code, reason: "test", isRetriable: false).publishDisposition == disposition)
    }

    @Test func librdkafkasFlagsDecideForCodesNoTableNames() {
        let unknown = KafkaError.Code(rawValue: 77)
        #expect(KafkaError(code: unknown, reason: "test", isRetriable: true).publishDisposition == .retriable)
        #expect(KafkaError(code: .queueFull, reason: "test", isRetriable: true, isFatal: true).publishDisposition == .fatal)
        // A table entry outranks the flag: UNKNOWN_TOPIC_OR_PART is retriable to librdkafka.
        #expect(KafkaError(code: .unknownTopicOrPartition, reason: "test", isRetriable: true).publishDisposition == .permanentForWorker)
    }

    @Test func theProducersLimitIsDerivedFromMaxMessageBytesAndALowerOneIsRefused() throws {
        let descriptor = WorkerDescriptor(
            name: "W", component: "w", defaultGroupID: "g", defaultHTTPPort: 1, inputTopic: { $0.shopperEvents }, migrations: { [] })
        let derived = try WorkerConfiguration(descriptor: descriptor, environment: Environment(["MAX_MESSAGE_BYTES": "2000000"]))
        #expect(derived.producer.effectiveMessageMaxBytes == 2_000_000 + DeadLetter.headerAllowance)
        #expect(derived.producer.librdkafkaProperties["message.max.bytes"] == String(2_000_000 + DeadLetter.headerAllowance))
        #expect(derived.producer.librdkafkaProperties["allow.auto.create.topics"] == "false")
        let raised = try WorkerConfiguration(descriptor: descriptor, environment: Environment(["KAFKA_MESSAGE_MAX_BYTES": "4000000"]))
        #expect(raised.producer.effectiveMessageMaxBytes == 4_000_000)
        #expect(throws: ConfigurationError.self) {
            try WorkerConfiguration(descriptor: descriptor, environment: Environment(["KAFKA_MESSAGE_MAX_BYTES": "1000000"]))
        }
        do {
            _ = try WorkerConfiguration(descriptor: descriptor, environment: Environment(["KAFKA_MESSAGE_MAX_BYTES": "1000000"]))
        } catch let error as ConfigurationError {
            #expect("\(error)".contains("KAFKA_MESSAGE_MAX_BYTES") && "\(error)".contains("MAX_MESSAGE_BYTES"))
        }
    }
}
