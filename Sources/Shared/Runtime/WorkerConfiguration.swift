import Logging

/// Everything a worker process is configured with.
public struct WorkerConfiguration: Sendable {
    /// How logs are written.
    public enum LogFormat: String, Sendable {
        /// One JSON object per line (default).
        case json
        /// swift-log's plain text lines, for a terminal.
        case text
    }

    /// The worker's consumer: group, cluster, pass-through properties.
    public var consumer: KafkaConsumerConfiguration
    /// The worker's producer (commands and dead letters).
    public var producer: KafkaProducerConfiguration
    /// PostgreSQL.
    public var postgres: PostgresConfiguration
    /// Topic names.
    public var topics: Topics
    /// The port of `/healthz`, `/readyz` and `/metrics`. Default: the worker's (8081, 8082, 8083).
    public var httpPort: Int
    /// The lowest level logged. Default: `info`.
    public var logLevel: Logger.Level = .info
    /// How logs are written. Default: ``LogFormat/json``.
    public var logFormat: LogFormat = .json
    /// How long shutdown may take to finish the batch in hand, flush and leave the group. Default: 20 s.
    public var drainTimeout: Duration = .seconds(20)
    /// `/healthz` fails when the poll loop has not turned for this long. Default: 30 s.
    public var livenessWindow: Duration = .seconds(30)
    /// The most messages one poll returns. Default: 500.
    public var batchSize: Int = 500
    /// The most bytes (keys and values) one poll returns. Default: 8 MiB.
    public var batchMaxBytes: Int = 8 << 20
    /// The address the probe server binds (`HTTP_HOST`). Default: `0.0.0.0`, every interface, as a Kubernetes probe
    /// and a Prometheus scrape need; `127.0.0.1` on a host shared with others.
    public var httpHost: String = "0.0.0.0"
    /// How many transactions a batch is split into, by partition, run at once. Default: 3.
    public var transactionsPerBatch: Int = 3
    /// How long a poll waits for its first message. Default: 100 ms.
    public var batchWait: Duration = .milliseconds(100)
    /// Larger input messages are dead-lettered unread (`too_large`). Default: 1 MiB.
    public var maxMessageBytes: Int = 1 << 20
    /// How many times an event whose handling fails is tried before it is dead-lettered. Default: 3.
    public var maxAttempts: Int = 3
    /// How long a processed message id is remembered for de-duplication. Default: 30 days.
    public var deduplicationWindow: Duration = .seconds(30 * 86_400)

    /// A configuration from its parts, with the remaining defaults.
    public init(
        consumer: KafkaConsumerConfiguration, producer: KafkaProducerConfiguration, postgres: PostgresConfiguration,
        topics: Topics, httpPort: Int
    ) {
        self.consumer = consumer
        self.producer = producer
        self.postgres = postgres
        self.topics = topics
        self.httpPort = httpPort
    }
}
