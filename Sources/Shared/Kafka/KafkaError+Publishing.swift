import CRdKafka

extension KafkaError {
    /// What a failed publish of one message means for the worker: the pipeline's whole error policy on its publish
    /// and dead-letter paths. docs/architecture.md's table lists the same codes.
    public enum PublishDisposition: String, Sendable, CaseIterable {
        /// A passing condition (a broker restarting, a leader moving, a full local queue, a delivery timeout): send the
        /// same message again after a backoff.
        case retriable
        /// Something about this one message can never be delivered as it is (too large for the producer or the topic,
        /// an invalid record): it is never retried as it is. A dead letter goes again as a truncated copy; a command
        /// becomes a dead letter itself.
        case permanentForMessage = "permanent_for_message"
        /// The worker is set up wrong for the cluster (a topic missing, authorization refused, a property the broker
        /// rejects): nothing can be published until an operator acts. Retried with backoff, readiness false, logged
        /// once a minute; nothing is skipped.
        case permanentForWorker = "permanent_for_worker"
        /// The producer itself is unusable (librdkafka's fatal flag, e.g. an idempotence sequence broken): the worker
        /// exits and is restarted; the outbox keeps what was not delivered.
        case fatal
    }

    /// How the pipeline treats this error when publishing one message. librdkafka's fatal flag decides first, then
    /// the code tables below, then librdkafka's retriable flag; a code in no table that librdkafka does not call
    /// retriable is taken as permanent for the worker — loud and retried, never skipped.
    public var publishDisposition: PublishDisposition {
        if isFatal || code == .fatal { return .fatal }
        if Self.permanentForMessageCodes.contains(code) { return .permanentForMessage }
        if Self.permanentForWorkerCodes.contains(code) { return .permanentForWorker }
        if isRetriable || Self.retriableCodes.contains(code) || Self.retriablePublishCodes.contains(code) { return .retriable }
        return .permanentForWorker
    }

    /// Codes that are about one message: its size or its records.
    static let permanentForMessageCodes: Set<Code> = [
        .messageSizeTooLarge,  // MSG_SIZE_TOO_LARGE: over the producer's message.max.bytes, or the topic's max.message.bytes
        Code(RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE),
        Code(RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE),
        Code(RD_KAFKA_RESP_ERR_INVALID_RECORD),
        Code(RD_KAFKA_RESP_ERR_INVALID_MSG),
        Code(RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP),
        Code(RD_KAFKA_RESP_ERR__BAD_MSG),
        Code(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION),
    ]

    /// Codes that say the worker's setup does not fit the cluster. `UNKNOWN_TOPIC_OR_PART` is retriable in the Kafka
    /// protocol (a topic being created), but a producer that still gets it after `topic.metadata.propagation.max.ms`
    /// is publishing to a topic that does not exist.
    static let permanentForWorkerCodes: Set<Code> = [
        .unknownTopicOrPartition,
        .unknownTopic,
        .topicAuthorizationFailed,
        Code(RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED),
        Code(RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        Code(RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED),
        Code(RD_KAFKA_RESP_ERR__AUTHENTICATION),
        Code(RD_KAFKA_RESP_ERR__SSL),
        Code(RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION),
        Code(RD_KAFKA_RESP_ERR_POLICY_VIOLATION),
        Code(RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS),
        Code(RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION),
        Code(RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE),
    ]

    /// Transient codes of the produce path beside ``retriableCodes``.
    static let retriablePublishCodes: Set<Code> = [
        Code(RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE),
        Code(RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR),
        Code(RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED),
        Code(RD_KAFKA_RESP_ERR__RESOLVE),
    ]
}
