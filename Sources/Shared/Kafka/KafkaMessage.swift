/// A Kafka header: a name and optional bytes.
public struct KafkaHeader: Sendable, Equatable {
    /// The header's name.
    public var key: String
    /// The header's bytes; `nil` for a header without a value.
    public var value: [UInt8]?

    /// A header with raw bytes.
    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    /// A header whose value is UTF-8 text.
    public init(key: String, text: String) {
        self.init(key: key, value: Array(text.utf8))
    }
}

/// A message read from Kafka. Its bytes are copied out of librdkafka, so it outlives the poll that returned it: the
/// keys and values of one poll share one buffer, and each message holds slices of it.
public struct KafkaMessage: Sendable, Equatable {
    /// The topic and partition it was read from.
    public var topicPartition: TopicPartition
    /// Its offset in the partition.
    public var offset: Int64
    /// Its key, if it had one.
    public var key: ArraySlice<UInt8>?
    /// Its value; empty for a message without one.
    public var value: ArraySlice<UInt8>
    /// Its headers, in order.
    public var headers: [KafkaHeader]
    /// Its timestamp in milliseconds since 1970, when the broker reported one.
    public var timestampMilliseconds: Int64?

    /// The first header named `key`, as UTF-8 text.
    public func header(_ key: String) -> String? { headers.text(of: key) }

    /// The last header named `key`, as UTF-8 text: on a dead letter, the one the worker wrote, which it appends after
    /// the original's headers (a message dead-lettered before the worker renamed the original's `dlq.*` headers may
    /// carry a forged one first).
    public func workerHeader(_ key: String) -> String? {
        headers.last { $0.key == key }?.value.map { String(decoding: $0, as: UTF8.self) }
    }

    /// Where it was read.
    public var position: MessagePosition { MessagePosition(topicPartition: topicPartition, offset: offset) }
}

/// Where a message sits in Kafka: its topic, partition and offset.
public struct MessagePosition: Hashable, Sendable {
    /// The topic and partition.
    public var topicPartition: TopicPartition
    /// The offset in the partition.
    public var offset: Int64

    public init(topicPartition: TopicPartition, offset: Int64) {
        self.topicPartition = topicPartition
        self.offset = offset
    }
}

extension Sequence<KafkaHeader> {
    /// The value of the first header named `key`, as UTF-8 text.
    func text(of key: String) -> String? {
        first { $0.key == key }?.value.map { String(decoding: $0, as: UTF8.self) }
    }
}

/// A message to publish.
public struct KafkaOutboundMessage: Sendable, Equatable {
    /// The topic to publish to.
    public var topic: String
    /// The key, which picks the partition (librdkafka's default partitioner: consistent murmur2-compatible hashing).
    public var key: [UInt8]?
    /// The value.
    public var value: [UInt8]
    /// Headers, in order.
    public var headers: [KafkaHeader]
    /// An explicit partition, overriding the key's choice. Default: `nil` (by key).
    public var partition: Int32?

    /// A message for `topic`.
    public init(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = [], partition: Int32? = nil) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition
    }

    /// The first header named `key`, as UTF-8 text.
    public func header(_ key: String) -> String? { headers.text(of: key) }
}

/// Where a published message landed.
public struct KafkaDeliveryReport: Sendable, Equatable {
    /// The partition it was written to.
    public var topicPartition: TopicPartition
    /// Its offset there.
    public var offset: Int64
}
