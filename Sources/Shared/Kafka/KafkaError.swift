import CRdKafka

/// An error from Kafka: librdkafka's own error code, kept as it is, with the retriable and fatal flags that
/// librdkafka attaches to it.
///
/// Compare ``code`` against the static members (``Code/queueFull``, ``Code/messageTimedOut``, …) or against
/// ``Code/rawValue`` for any other `rd_kafka_resp_err_t`.
public struct KafkaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A librdkafka error code (`rd_kafka_resp_err_t`): negative values are client-side, positive ones come from the
    /// broker (the Kafka protocol's error codes).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The numeric `rd_kafka_resp_err_t`.
        public let rawValue: Int32

        /// Wraps a numeric librdkafka error code.
        public init(rawValue: Int32) { self.rawValue = rawValue }

        package init(_ err: rd_kafka_resp_err_t) { self.rawValue = err.rawValue }

        /// librdkafka's symbolic name, e.g. `_MSG_TIMED_OUT` or `TOPIC_AUTHORIZATION_FAILED`.
        public var name: String { String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: rawValue))) }

        public var description: String { name }

        /// The local queue is full (`_QUEUE_FULL`).
        public static let queueFull = Code(RD_KAFKA_RESP_ERR__QUEUE_FULL)
        /// A message was not delivered within `message.timeout.ms` (`_MSG_TIMED_OUT`).
        public static let messageTimedOut = Code(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
        /// An operation did not finish in time (`_TIMED_OUT`).
        public static let timedOut = Code(RD_KAFKA_RESP_ERR__TIMED_OUT)
        /// No offset to commit (`_NO_OFFSET`).
        public static let noOffset = Code(RD_KAFKA_RESP_ERR__NO_OFFSET)
        /// The topic is not known to the cluster (`UNKNOWN_TOPIC_OR_PART`).
        public static let unknownTopicOrPartition = Code(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        /// Not allowed to write to or read from the topic (`TOPIC_AUTHORIZATION_FAILED`).
        public static let topicAuthorizationFailed = Code(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        /// The group is rebalancing; the offset commit was refused (`REBALANCE_IN_PROGRESS`).
        public static let rebalanceInProgress = Code(RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS)
        /// A configuration property or value was rejected (`_INVALID_ARG`).
        public static let invalidArgument = Code(RD_KAFKA_RESP_ERR__INVALID_ARG)
        /// The client is closing or closed (`_DESTROY`).
        public static let destroyed = Code(RD_KAFKA_RESP_ERR__DESTROY)
        /// The client hit a fatal error and must be recreated (`_FATAL`).
        public static let fatal = Code(RD_KAFKA_RESP_ERR__FATAL)
        /// The producer has no metadata for the topic: it does not exist (`_UNKNOWN_TOPIC`).
        public static let unknownTopic = Code(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
        /// The message is larger than the broker accepts (`MSG_SIZE_TOO_LARGE`).
        public static let messageSizeTooLarge = Code(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
    }

    /// The librdkafka error code.
    public let code: Code
    /// A human-readable reason: librdkafka's error string, with what Rapport was doing.
    public let reason: String
    /// Whether repeating the operation may succeed (librdkafka's retriable flag, or a code known to be transient).
    public let isRetriable: Bool
    /// Whether the client is unusable and must be recreated (librdkafka's fatal flag).
    public let isFatal: Bool

    /// Creates an error from its parts.
    public init(code: Code, reason: String, isRetriable: Bool, isFatal: Bool = false) {
        self.code = code
        self.reason = reason
        self.isRetriable = isRetriable
        self.isFatal = isFatal
    }

    /// An error for a bare librdkafka code, with its retriability judged from the code.
    package init(_ err: rd_kafka_resp_err_t, _ context: String) {
        let code = Code(err)
        self.init(
            code: code,
            reason: "\(context): \(String(cString: rd_kafka_err2str(err)))",
            isRetriable: Self.retriableCodes.contains(code)
        )
    }

    /// Takes ownership of an `rd_kafka_error_t`, keeping its flags, and destroys it.
    init(consuming error: OpaquePointer, _ context: String) {
        defer { rd_kafka_error_destroy(error) }
        let code = Code(rd_kafka_error_code(error))
        let fatal = rd_kafka_error_is_fatal(error) != 0
        self.init(
            code: code,
            reason: "\(context): \(String(cString: rd_kafka_error_string(error)))",
            isRetriable: Self.isRetriable(code, flagged: rd_kafka_error_is_retriable(error) != 0, fatal: fatal),
            isFatal: fatal
        )
    }

    /// Whether an error librdkafka returned may pass: flagged so, or of a passing kind (``retriableCodes``), and not
    /// fatal. The flag alone misses some: a seek that timed out waiting for the fetcher under load
    /// (`_TIMED_OUT`, "Timed out waiting for 2 remaining partition seek(s)") comes unflagged, and was taken for a
    /// permanent failure — the worker exited (scripts/chaos, an hour at 300 events/s).
    static func isRetriable(_ code: Code, flagged: Bool, fatal: Bool) -> Bool {
        !fatal && (flagged || retriableCodes.contains(code))
    }

    /// Codes that describe a passing condition rather than a bad request.
    static let retriableCodes: Set<Code> = [
        .queueFull, .messageTimedOut, .timedOut, .rebalanceInProgress,
        Code(RD_KAFKA_RESP_ERR__TRANSPORT), Code(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN),
        Code(RD_KAFKA_RESP_ERR__WAIT_COORD), Code(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT),
        Code(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION), Code(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE),
        Code(RD_KAFKA_RESP_ERR_NOT_COORDINATOR), Code(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE),
        Code(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS), Code(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS),
        Code(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND), Code(RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION),
        Code(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
    ]

    public var description: String {
        "KafkaError(\(code.name)\(isRetriable ? ", retriable" : "")\(isFatal ? ", fatal" : "")): \(reason)"
    }
}
