/// Told about partitions moving to and from this consumer, on the consumer's poll thread, before librdkafka applies
/// the change. Its methods may block (for example on a PostgreSQL query): the poll thread is not a cooperative one.
public protocol KafkaRebalanceListener: Sendable {
    /// Partitions about to be assigned to this consumer.
    /// - Returns: The offset to start each partition from; a partition not in the answer starts from its committed
    ///   offset (or the reset policy's). Default: none.
    func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64]

    /// Partitions about to be taken from this consumer in an orderly rebalance. Finish and commit their work here:
    /// once this returns, another member may start reading them. Messages of these partitions that the poll in progress
    /// had already read are dropped by the consumer, never returned.
    func partitionsRevoked(_ partitions: [TopicPartition])

    /// Partitions this consumer lost without a rebalance (its session expired): another member may already own
    /// them, so their offsets cannot be committed. Default: nothing.
    func partitionsLost(_ partitions: [TopicPartition])
}

extension KafkaRebalanceListener {
    public func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] { [:] }
    public func partitionsRevoked(_ partitions: [TopicPartition]) {}
    public func partitionsLost(_ partitions: [TopicPartition]) {}
}
