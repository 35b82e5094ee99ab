/// One partition of one topic.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The topic's name.
    public var topic: String
    /// The partition's number.
    public var partition: Int32

    /// Names partition `partition` of `topic`.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }

    public static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }
}

/// The consumer lag of one assigned partition.
public struct PartitionLag: Sendable, Equatable {
    /// The partition.
    public var topicPartition: TopicPartition
    /// The next offset this consumer will read, or `nil` before its first fetch.
    public var position: Int64?
    /// The offset the next produced message will get (the high watermark), as last seen by a fetch.
    public var highWatermark: Int64
    /// Messages not yet read: `highWatermark − position`, or `nil` while the position is unknown.
    public var lag: Int64? { position.map { max(0, highWatermark - $0) } }
}
