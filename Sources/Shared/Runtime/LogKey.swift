import Logging

/// Every log metadata key Rapport uses, in one place, dotted by subsystem.
public enum LogKey {
    /// The Kafka topic.
    public static let kafkaTopic = "kafka.topic"
    /// The Kafka partition.
    public static let kafkaPartition = "kafka.partition"
    /// The Kafka offset.
    public static let kafkaOffset = "kafka.offset"
    /// The librdkafka facility of a forwarded librdkafka log line.
    public static let kafkaFacility = "kafka.facility"
    /// The partitions concerned by a rebalance.
    public static let kafkaPartitions = "kafka.partitions"
    /// A librdkafka error code name.
    public static let kafkaError = "kafka.error"
    /// The message id of a Segment event.
    public static let messageID = "event.message_id"
    /// How many messages an operation concerns.
    public static let messages = "messages"
    /// A message's weight as librdkafka counts it, in bytes.
    public static let bytes = "bytes"
    /// A command's deterministic id.
    public static let commandID = "command.id"
    /// An outbox row's id.
    public static let outboxID = "outbox.id"
    /// A PostgreSQL SQLSTATE.
    public static let sqlState = "pg.sqlstate"
    /// A migration component and version.
    public static let migration = "pg.migration"
    /// The error being reported.
    public static let error = "error"
    /// The worker's name.
    public static let worker = "worker"
}
