import CRdKafka
import Logging
import Shared

/// librdkafka's mock cluster: brokers that speak the real Kafka protocol over TCP on loopback, serving producers,
/// consumers and consumer groups across processes. Rapport's embedded Kafka for tests and the local demo, never for
/// production.
///
/// Measured limits of librdkafka 2.0.2's mock: topics exist only if created here (no CreateTopics), each partition
/// keeps about 100k messages or 5 MiB, and transactions are not enforced.
public final class MockKafkaCluster: @unchecked Sendable {
    // `@unchecked Sendable`: the mock cluster's API is thread-safe (every call is an op on its own thread).
    private let handle: RDKafkaHandle
    private let cluster: OpaquePointer

    /// Kafka protocol request kinds, for error injection.
    public struct APIKey: Sendable {
        let rawValue: Int16
        /// Produce (0).
        public static let produce = APIKey(rawValue: 0)
        /// Fetch (1).
        public static let fetch = APIKey(rawValue: 1)
        /// OffsetCommit (8).
        public static let offsetCommit = APIKey(rawValue: 8)
        /// JoinGroup (11).
        public static let joinGroup = APIKey(rawValue: 11)
        /// Heartbeat (12).
        public static let heartbeat = APIKey(rawValue: 12)
    }

    /// Starts `brokers` brokers on random loopback ports.
    /// - Throws: ``KafkaError`` when the cluster cannot start.
    public init(brokers: Int = 3, logger: Logger) throws {
        // The mock needs a client for its threads and logging; a producer that never produces serves.
        handle = try RDKafkaHandle.mockClusterHost(logger: logger)
        guard let cluster = rd_kafka_mock_cluster_new(handle.pointer, Int32(brokers)) else {
            throw KafkaError(code: .fatal, reason: "rd_kafka_mock_cluster_new failed", isRetriable: false)
        }
        self.cluster = cluster
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
    }

    /// The bootstrap servers to give clients, `host:port,host:port,…`.
    public var bootstrapServers: String { String(cString: rd_kafka_mock_cluster_bootstraps(cluster)) }

    /// Creates `topic` with `partitions` partitions.
    /// - Throws: ``KafkaError`` when the mock refuses.
    public func createTopic(_ topic: String, partitions: Int, replicationFactor: Int = 1) throws {
        let err = rd_kafka_mock_topic_create(cluster, topic, Int32(partitions), Int32(replicationFactor))
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "create topic \(topic)") }
    }

    /// Makes metadata requests answer `code` for `topic` (`UNKNOWN_TOPIC_OR_PART`: clients see a topic that does not
    /// exist); ``KafkaError/Code`` 0 clears it.
    public func setTopicError(_ topic: String, _ code: KafkaError.Code) {
        rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(rawValue: code.rawValue))
    }

    /// Makes the next `errors.count` requests of kind `apiKey` fail, in order, with the given codes.
    public func pushRequestErrors(_ apiKey: APIKey, _ errors: [KafkaError.Code]) {
        let codes = errors.map { rd_kafka_resp_err_t(rawValue: $0.rawValue) }
        codes.withUnsafeBufferPointer {
            rd_kafka_mock_push_request_errors_array(cluster, apiKey.rawValue, codes.count, $0.baseAddress)
        }
    }
}
