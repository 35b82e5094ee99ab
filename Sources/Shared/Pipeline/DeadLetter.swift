import Foundation

/// A message that goes to `<input topic>-dlq`: its original key, value and headers, plus the contract's `dlq.*`
/// headers saying why and where from.
public struct DeadLetter: Sendable, Equatable {
    /// The message as read.
    public var source: KafkaMessage
    /// Why it could not be handled.
    public var failure: DecodeFailure
    /// The Segment `messageId`, when the message was read far enough to have one (for logs).
    public var messageID: String?

    /// A dead letter for `source`.
    public init(source: KafkaMessage, failure: DecodeFailure, messageID: String? = nil) {
        self.source = source
        self.failure = failure
        self.messageID = messageID
    }

    /// The message to publish to `topic` on behalf of `worker`, failed at `failedAt`.
    public func outbound(topic: String, worker: String, failedAt: Date) -> KafkaOutboundMessage {
        let headers =
            source.headers + [
                KafkaHeader(key: "dlq.reason", text: failure.reason.rawValue),
                KafkaHeader(key: "dlq.message", text: failure.message),
                KafkaHeader(key: "dlq.source.topic", text: source.topicPartition.topic),
                KafkaHeader(key: "dlq.source.partition", text: String(source.topicPartition.partition)),
                KafkaHeader(key: "dlq.source.offset", text: String(source.offset)),
                KafkaHeader(key: "dlq.worker", text: worker),
                KafkaHeader(key: "dlq.failed_at", text: failedAt.rfc3339),
            ]
        return KafkaOutboundMessage(topic: topic, key: source.key.map(Array.init), value: Array(source.value), headers: headers)
    }
}
