import CRdKafka

/// What every Kafka client of Rapport needs: where the cluster is and the librdkafka properties that pass through
/// unchanged (security, tuning).
public struct KafkaConfiguration: Sendable, Equatable {
    /// Bootstrap servers, `host:port`. Default: `["localhost:9092"]`.
    public var bootstrapServers: [String] = ["localhost:9092"]
    /// The client id the brokers see in logs and quotas. Default: `"rapport"`.
    public var clientID: String = "rapport"
    /// librdkafka properties applied last, overriding Rapport's own choices: `security.protocol`,
    /// `sasl.mechanisms`, `ssl.ca.location`, … Each is validated by librdkafka when a client is created.
    /// Default: none.
    public var properties: [String: String] = [:]
    /// `KAFKA_*` variables read from the environment but ignored: those Kubernetes injects for Services
    /// (``isServiceLink(_:)``). The worker names them in a warning at start.
    public var ignoredVariables: [String] = []

    /// A configuration with every default.
    public init() {}

    /// The librdkafka properties shared by consumers and producers.
    /// Nagle's algorithm off: the workers send small requests and wait for their answers.
    var baseProperties: [String: String] {
        ["bootstrap.servers": bootstrapServers.joined(separator: ","), "client.id": clientID, "socket.nagle.disable": "true"]
    }
}

/// A consumer in a group, committing offsets explicitly after its work is durable.
public struct KafkaConsumerConfiguration: Sendable, Equatable {
    /// How group members share partitions (`partition.assignment.strategy`).
    public struct AssignmentStrategy: Sendable, Equatable {
        let value: String
        /// Incremental, cooperative rebalancing: only the partitions that move are revoked.
        public static let cooperativeSticky = AssignmentStrategy(value: "cooperative-sticky")
        /// Eager rebalancing: every member gives up every partition, then the group reassigns them.
        public static let range = AssignmentStrategy(value: "range,roundrobin")

        /// Cooperative-sticky where the linked librdkafka is 2.3.0 or later, else eager. Before 2.3.0 the
        /// cooperative-sticky assignor aborts the process when a member is destroyed before its first assignment
        /// (librdkafka issue 4312) — a SIGTERM during start-up, as rolling deployments send.
        public static var recommended: AssignmentStrategy {
            rd_kafka_version() >= 0x0203_00FF ? .cooperativeSticky : .range
        }
    }

    /// Where a partition with no committed offset starts (`auto.offset.reset`).
    public struct OffsetReset: Sendable, Equatable {
        let value: String
        /// From the oldest message the broker keeps.
        public static let earliest = OffsetReset(value: "earliest")
        /// From the next message produced.
        public static let latest = OffsetReset(value: "latest")
    }

    /// The cluster and pass-through properties.
    public var kafka: KafkaConfiguration
    /// The consumer group. Required.
    public var groupID: String
    /// How partitions are shared. Default: ``AssignmentStrategy/recommended`` (eager with Debian 12's librdkafka 2.0.2).
    public var assignmentStrategy: AssignmentStrategy = .recommended
    /// Where a partition without a committed offset starts. Default: ``OffsetReset/earliest``, so that no event
    /// produced before the group first joined is skipped.
    public var offsetReset: OffsetReset = .earliest
    /// How long the group waits for a silent member before moving its partitions. Default: 45 s (Kafka's).
    public var sessionTimeout: Duration = .seconds(45)
    /// How often the member heartbeats. Default: 3 s.
    public var heartbeatInterval: Duration = .seconds(3)
    /// The longest time between two polls before the member is considered stuck and leaves. Default: 5 min.
    public var maxPollInterval: Duration = .seconds(300)
    /// How long the broker may hold a fetch waiting for data (`fetch.wait.max.ms`). A broker answers as soon as
    /// data arrives, so this bounds only idle waits. Default: 500 ms (librdkafka's). The embedded (mock) broker holds
    /// an empty fetch for all of it even when data arrives, which is why its benchmark lowers it; 100 ms together
    /// with the 16 MiB prefetch below made the mock serve consumers ten times slower.
    public var fetchWait: Duration = .milliseconds(500)
    /// How much the consumer prefetches, in KiB (`queued.max.messages.kbytes`). Default: 16 MiB (librdkafka's
    /// 64 MiB is most of a worker's memory and far more than a batch).
    public var prefetchKilobytes: Int = 16_384

    /// A configuration for `groupID` on `kafka`, with every other default.
    public init(kafka: KafkaConfiguration, groupID: String) {
        self.kafka = kafka
        self.groupID = groupID
    }

    /// Every librdkafka property of this consumer, pass-through properties last (those that apply to consumers).
    var librdkafkaProperties: [String: String] {
        var properties = kafka.baseProperties
        properties["group.id"] = groupID
        properties["enable.auto.commit"] = "false"
        properties["enable.auto.offset.store"] = "false"
        properties["enable.partition.eof"] = "false"
        properties["auto.offset.reset"] = offsetReset.value
        properties["partition.assignment.strategy"] = assignmentStrategy.value
        properties["session.timeout.ms"] = String(sessionTimeout.milliseconds)
        properties["heartbeat.interval.ms"] = String(heartbeatInterval.milliseconds)
        properties["max.poll.interval.ms"] = String(maxPollInterval.milliseconds)
        properties["fetch.wait.max.ms"] = String(fetchWait.milliseconds)
        properties["queued.max.messages.kbytes"] = String(prefetchKilobytes)
        properties.merge(kafka.properties.applying(to: .consumer)) { _, passedThrough in passedThrough }
        return properties
    }
}

/// An idempotent producer that reports every message's delivery.
public struct KafkaProducerConfiguration: Sendable, Equatable {
    /// The cluster and pass-through properties.
    public var kafka: KafkaConfiguration
    /// How long the producer waits to fill a batch (`linger.ms`). Default: 5 ms.
    public var linger: Duration = .milliseconds(5)
    /// How long a message may take to be delivered, retries included, before its report is an error
    /// (`message.timeout.ms`). Default: 30 s.
    public var deliveryTimeout: Duration = .seconds(30)
    /// Compression of message batches (`compression.codec`). Default: `"lz4"`.
    public var compression: String = "lz4"
    /// The largest message the producer accepts, key and headers included (`message.max.bytes`; librdkafka refuses a
    /// larger one with `MSG_SIZE_TOO_LARGE` before sending it). Set explicitly, never left to librdkafka's default
    /// (1,000,000), so that what a dead letter may weigh is decided by design. Default: 1 MiB + 64 KiB, which the
    /// worker configuration derives from `MAX_MESSAGE_BYTES` (see ``DeadLetter/headerAllowance``);
    /// `KAFKA_MESSAGE_MAX_BYTES` overrides it.
    public var messageMaxBytes: Int = (1 << 20) + (64 << 10)

    /// A configuration for `kafka` with every other default.
    public init(kafka: KafkaConfiguration) {
        self.kafka = kafka
    }

    /// Every librdkafka property of this producer, pass-through properties last (those that apply to producers).
    /// Idempotence (and so `acks=all` and ordered retries) is always on.
    var librdkafkaProperties: [String: String] {
        var properties = kafka.baseProperties
        properties["enable.idempotence"] = "true"
        properties["linger.ms"] = String(linger.milliseconds)
        properties["message.timeout.ms"] = String(deliveryTimeout.milliseconds)
        properties["compression.codec"] = compression
        properties["message.max.bytes"] = String(messageMaxBytes)
        // Topics are created by operators (the deployment's topic resources), never by a first publish with the
        // broker's defaults: a missing topic is reported instead (librdkafka's producer default is to auto-create).
        properties["allow.auto.create.topics"] = "false"
        properties.merge(kafka.properties.applying(to: .producer)) { _, passedThrough in passedThrough }
        properties["enable.idempotence"] = "true"
        return properties
    }

    /// The `message.max.bytes` the producer runs with: a pass-through `KAFKA_MESSAGE_MAX_BYTES` if given, else
    /// ``messageMaxBytes``.
    public var effectiveMessageMaxBytes: Int {
        librdkafkaProperties["message.max.bytes"].flatMap { Int($0) } ?? messageMaxBytes
    }
}

extension Duration {
    /// The duration in whole milliseconds, rounded down.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
