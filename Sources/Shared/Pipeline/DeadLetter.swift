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

    /// How much more than `MAX_MESSAGE_BYTES` the producer's `message.max.bytes` allows by default: room for the
    /// original key and headers and the `dlq.*` headers, so that the dead letter of any message the worker accepts
    /// goes out whole. 64 KiB.
    public static let headerAllowance = 64 << 10

    /// The message to publish to `topic` on behalf of `worker`, failed at `failedAt`: the original bytes, or, when
    /// that would weigh more than `limit` (the producer's `message.max.bytes`), a truncated copy (see
    /// ``KafkaOutboundMessage/truncatedDeadLetter(toFit:)``).
    public func outbound(topic: String, worker: String, failedAt: Date, limit: Int = .max) -> KafkaOutboundMessage {
        let headers =
            Self.untrusted(source.headers)
            + Self.headers(
                reason: failure.reason, message: failure.message, source: source.topicPartition, offset: source.offset, worker: worker,
                failedAt: failedAt)
        let message = KafkaOutboundMessage(topic: topic, key: source.key.map(Array.init), value: Array(source.value), headers: headers)
        return message.wireSize <= limit ? message : message.truncatedDeadLetter(toFit: limit) ?? message
    }

    /// The original message's headers with those under `dlq.` renamed `original.dlq.…`: whoever published the event
    /// could have set them, and only the worker's own `dlq.*` headers may say why and where from.
    static func untrusted(_ headers: [KafkaHeader]) -> [KafkaHeader] {
        headers.map { header in
            guard header.key.hasPrefix(prefix) else { return header }
            return KafkaHeader(key: renamedPrefix + header.key, value: header.value)
        }
    }

    /// The prefix of the worker's own headers.
    static let prefix = "dlq."
    /// What an original `dlq.*` header is renamed with: `dlq.reason` becomes `original.dlq.reason`.
    static let renamedPrefix = "original."

    /// The contract's `dlq.*` headers.
    static func headers(
        reason: DecodeFailure.Reason, message: String, source: TopicPartition, offset: Int64?, worker: String, failedAt: Date
    ) -> [KafkaHeader] {
        [
            KafkaHeader(key: "dlq.reason", text: reason.rawValue),
            KafkaHeader(key: "dlq.message", text: message),
            KafkaHeader(key: "dlq.source.topic", text: source.topic),
            KafkaHeader(key: "dlq.source.partition", text: String(source.partition)),
            KafkaHeader(key: "dlq.source.offset", text: offset.map(String.init) ?? "unknown"),
            KafkaHeader(key: "dlq.worker", text: worker),
            KafkaHeader(key: "dlq.failed_at", text: failedAt.rfc3339),
        ]
    }
}

extension KafkaOutboundMessage {
    /// What librdkafka weighs against `message.max.bytes`: key, value, headers (each name and value with their
    /// length prefixes) and a record's largest framing overhead, rounded up.
    public var wireSize: Int {
        64 + (key?.count ?? 0) + value.count + headers.reduce(0) { $0 + 10 + $1.key.utf8.count + ($1.value?.count ?? 0) }
    }

    /// A dead letter cut down to weigh at most `limit`: the first bytes of the value that fit, the original key and
    /// headers, plus `dlq.truncated: true`, `dlq.original.size` and `dlq.original.sha256` (of the whole original
    /// value, so that the original can be found and checked). A copy already truncated keeps its original size and
    /// digest and is only cut further. When even the headers leave no room, the original (non-`dlq.`) headers are
    /// dropped too (`dlq.original.headers: dropped`).
    /// - Returns: `nil` when nothing that says what the message was fits in `limit`.
    public func truncatedDeadLetter(toFit limit: Int) -> KafkaOutboundMessage? {
        var headers = self.headers
        if !headers.contains(where: { $0.key == "dlq.truncated" }) {
            headers += [
                KafkaHeader(key: "dlq.truncated", text: "true"),
                KafkaHeader(key: "dlq.original.size", text: String(value.count)),
                KafkaHeader(key: "dlq.original.sha256", text: SHA256.hex(value)),
            ]
        }
        var copy = KafkaOutboundMessage(topic: topic, key: key, value: [], headers: headers)
        if copy.wireSize > limit {
            copy.headers =
                headers.filter { $0.key.hasPrefix("dlq.") && $0.key != "dlq.original.headers" }
                + [KafkaHeader(key: "dlq.original.headers", text: "dropped")]
        }
        let room = limit - copy.wireSize
        guard room >= 0 else { return nil }
        copy.value = Array(value.prefix(room))
        return copy
    }
}
