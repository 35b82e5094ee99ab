import CRdKafka
import Logging
import Synchronization

/// A member of a Kafka consumer group on librdkafka's high-level consumer, committing offsets only when told to.
///
/// Blocking librdkafka calls run on the consumer's own ``BlockingQueue``; a caller awaits a whole batch:
/// ```swift
/// let consumer = try KafkaConsumer(configuration: config, logger: logger)
/// try consumer.subscribe(to: ["shopper-events"])
/// let batch = try await consumer.poll(maxMessages: 500, maxWait: .milliseconds(100))
/// // … make the batch durable …
/// try await consumer.commit(batch.nextOffsets)
/// ```
/// Rebalances are reported to the ``KafkaRebalanceListener`` on the poll thread, before they take effect, under both
/// the eager and the cooperative-sticky protocol.
public final class KafkaConsumer: Sendable {
    private let handle: RDKafkaHandle
    private let context: Context
    private let queue: BlockingQueue
    private let logger: Logger

    /// Creates a consumer; it joins the group on ``subscribe(to:)``.
    ///
    /// - Parameters:
    ///   - configuration: The group, cluster and pass-through properties.
    ///   - rebalanceListener: Told about partitions moving, before they move.
    ///   - logger: For the consumer's own lines and librdkafka's.
    /// - Throws: ``ConfigurationError`` when librdkafka rejects a property.
    public init(
        configuration: KafkaConsumerConfiguration,
        rebalanceListener: (any KafkaRebalanceListener)? = nil,
        logger: Logger
    ) throws {
        let context = Context(logger: logger, listener: rebalanceListener)
        handle = try RDKafkaHandle(kind: .consumer, properties: configuration.librdkafkaProperties, context: context) {
            rd_kafka_conf_set_rebalance_cb($0, rebalance)
        }
        // Serve the main queue (logs aside: errors, rebalances) through the consumer queue that poll reads.
        rd_kafka_poll_set_consumer(handle.pointer)
        self.context = context
        self.queue = BlockingQueue(label: "rapport.kafka.consumer.\(configuration.groupID)")
        self.logger = logger
    }

    /// Joins the group for `topics`; partitions arrive through later polls.
    /// - Throws: ``KafkaError`` when librdkafka refuses the subscription.
    public func subscribe(to topics: [String]) throws {
        let list = TopicPartitionList.make(topics.map { (TopicPartition(topic: $0, partition: RD_KAFKA_PARTITION_UA), nil) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_subscribe(handle.pointer, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "subscribe to \(topics)") }
    }

    /// Reads partitions directly, outside any group rebalance (tools and tests).
    /// - Parameter partitions: Each partition with the offset to start from, or `nil` for its committed offset.
    /// - Throws: ``KafkaError``.
    public func assign(_ partitions: [TopicPartition: Int64?]) throws {
        let list = TopicPartitionList.make(partitions.map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_assign(handle.pointer, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "assign") }
        context.assignment.withLock { $0 = Set(partitions.keys) }
    }

    /// Reads up to `maxMessages`, and no more once their keys and values weigh `maxBytes` (at least one message is
    /// returned whatever it weighs): waits up to `maxWait` for the first, then takes what has already been fetched
    /// without waiting again. Rebalance callbacks run inside this call, on the consumer's thread.
    ///
    /// - Returns: Messages in partition order; none of a partition revoked during this poll.
    /// - Throws: ``KafkaError`` when the consumer has a fatal error or is closed.
    public func poll(maxMessages: Int, maxBytes: Int = .max, maxWait: Duration) async throws -> [KafkaMessage] {
        let handle = self.handle
        let context = self.context
        let logger = self.logger
        return try await queue.run {
            try Self.pollBatch(handle.pointer, context: context, maxMessages: maxMessages, maxBytes: maxBytes, maxWait: maxWait, logger: logger)
        }
    }

    private static func pollBatch(
        _ client: OpaquePointer,
        context: Context,
        maxMessages: Int,
        maxBytes: Int,
        maxWait: Duration,
        logger: Logger
    ) throws -> [KafkaMessage] {
        guard !context.isClosed else { throw KafkaError(code: .destroyed, reason: "consumer is closed", isRetriable: false) }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: maxWait)
        // First collect librdkafka's messages, then copy all their bytes at once: one allocation per poll rather
        // than two per message.
        var polled: [(message: UnsafeMutablePointer<rd_kafka_message_t>, topicPartition: TopicPartition)] = []
        polled.reserveCapacity(min(maxMessages, 10_000))
        defer { for entry in polled { rd_kafka_message_destroy(entry.message) } }
        context.revokedDuringPoll.removeAll()
        // Messages come in runs of one partition: remember the last topic instead of asking the cache each time.
        var lastTopic: (handle: OpaquePointer, name: String)?
        // Keys and values so far: the batch stops at `maxBytes` (after at least one message), however many there are.
        var bytes = 0
        while polled.count < maxMessages, bytes < maxBytes {
            let timeout = polled.isEmpty ? max(0, Int32(clamping: (deadline - clock.now).milliseconds)) : 0
            let next = rd_kafka_consumer_poll(client, timeout)
            if !context.revokedDuringPoll.isEmpty {
                let revoked = context.revokedDuringPoll
                polled.removeAll { entry in
                    guard revoked.contains(entry.topicPartition) else { return false }
                    rd_kafka_message_destroy(entry.message)
                    return true
                }
                context.revokedDuringPoll.removeAll()
            }
            guard let next else {
                if polled.isEmpty, clock.now < deadline { continue }
                break
            }
            let message = next.pointee
            if message.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                defer { rd_kafka_message_destroy(next) }
                let reason = String(cString: rd_kafka_message_errstr(next))
                if message.err == RD_KAFKA_RESP_ERR__FATAL {
                    throw KafkaError(code: .fatal, reason: reason, isRetriable: false, isFatal: true)
                }
                logger.warning("consumer error", metadata: [LogKey.kafkaError: "\(KafkaError.Code(message.err).name)", LogKey.error: "\(reason)"])
                continue
            }
            let topic: String
            if let lastTopic, lastTopic.handle == message.rkt {
                topic = lastTopic.name
            } else {
                topic = context.topicNames.name(of: message.rkt)
                lastTopic = message.rkt.map { ($0, topic) }
            }
            polled.append((next, TopicPartition(topic: topic, partition: message.partition)))
            bytes += message.len + message.key_len
        }
        return KafkaMessage.copying(polled)
    }

    /// Commits `offsets` synchronously: each value is the next offset to read (the last processed offset + 1).
    /// - Throws: ``KafkaError`` (``KafkaError/Code/rebalanceInProgress`` while the group rebalances: retriable).
    public func commit(_ offsets: [TopicPartition: Int64]) async throws {
        guard !offsets.isEmpty else { return }
        let handle = self.handle
        try await queue.run {
            let list = TopicPartitionList.make(offsets.map { ($0.key, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_commit(handle.pointer, list, 0)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "commit offsets") }
            for (topicPartition, _, partitionError) in TopicPartitionList.elements(list)
            where partitionError != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError(partitionError, "commit offset of \(topicPartition)")
            }
        }
    }

    /// The offsets the group has committed for `partitions` (the next offset to read; `nil` where none).
    /// - Throws: ``KafkaError`` when the coordinator does not answer within `timeout`.
    public func committedOffsets(for partitions: [TopicPartition], timeout: Duration = .seconds(10)) async throws -> [TopicPartition: Int64] {
        let handle = self.handle
        return try await queue.run {
            let list = TopicPartitionList.make(partitions.map { ($0, nil) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(handle.pointer, list, Int32(clamping: timeout.milliseconds))
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "read committed offsets") }
            var offsets: [TopicPartition: Int64] = [:]
            for (topicPartition, offset, _) in TopicPartitionList.elements(list) where offset >= 0 {
                offsets[topicPartition] = offset
            }
            return offsets
        }
    }

    /// Asks the partitions' leaders for their high watermarks (the offset the next message produced will get).
    /// - Throws: ``KafkaError`` when a leader does not answer within `timeout`.
    public func highWatermarks(for partitions: [TopicPartition], timeout: Duration = .seconds(10)) async throws -> [TopicPartition: Int64] {
        let handle = self.handle
        return try await queue.run {
            var watermarks: [TopicPartition: Int64] = [:]
            for partition in partitions {
                var low: Int64 = 0
                var high: Int64 = 0
                let err = rd_kafka_query_watermark_offsets(
                    handle.pointer, partition.topic, partition.partition, &low, &high, Int32(clamping: timeout.milliseconds))
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "query watermarks of \(partition)") }
                watermarks[partition] = high
            }
            return watermarks
        }
    }

    /// The partitions of `topic`, from the cluster's metadata.
    /// - Throws: ``KafkaError`` when the cluster does not answer within `timeout` or does not know the topic.
    public func partitions(of topic: String, timeout: Duration = .seconds(10)) async throws -> [TopicPartition] {
        let handle = self.handle
        return try await queue.run {
            guard let named = rd_kafka_topic_new(handle.pointer, topic, nil) else { throw KafkaError(rd_kafka_last_error(), "open topic \(topic)") }
            defer { rd_kafka_topic_destroy(named) }
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(handle.pointer, 0, named, &metadata, Int32(clamping: timeout.milliseconds))
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err, "read the metadata of \(topic)") }
            defer { rd_kafka_metadata_destroy(metadata) }
            guard metadata.pointee.topic_cnt == 1, let described = metadata.pointee.topics?.pointee else {
                throw KafkaError(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "read the metadata of \(topic)")
            }
            guard described.err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(described.err, "read the metadata of \(topic)") }
            return (0..<Int(described.partition_cnt)).compactMap { index in
                described.partitions.map { TopicPartition(topic: topic, partition: $0[index].id) }
            }.sorted()
        }
    }

    /// Moves the fetch position of each partition to the given offset (the next one to read).
    /// - Throws: ``KafkaError`` when a partition cannot be moved (it is not assigned, or the broker timed out).
    public func seek(_ offsets: [TopicPartition: Int64], timeout: Duration = .seconds(10)) async throws {
        guard !offsets.isEmpty else { return }
        let handle = self.handle
        try await queue.run {
            let list = TopicPartitionList.make(offsets.map { ($0.key, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            if let error = rd_kafka_seek_partitions(handle.pointer, list, Int32(clamping: timeout.milliseconds)) {
                throw KafkaError(consuming: error, "seek")
            }
            for (topicPartition, _, partitionError) in TopicPartitionList.elements(list) where partitionError != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError(partitionError, "seek \(topicPartition)")
            }
        }
    }

    /// Stops fetching `partitions` until ``resume(_:)``; the assignment is kept.
    /// - Throws: ``KafkaError``.
    public func pause(_ partitions: [TopicPartition]) throws {
        try changeFlow(partitions, rd_kafka_pause_partitions, "pause")
    }

    /// Fetches `partitions` again after ``pause(_:)``.
    /// - Throws: ``KafkaError``.
    public func resume(_ partitions: [TopicPartition]) throws {
        try changeFlow(partitions, rd_kafka_resume_partitions, "resume")
    }

    private func changeFlow(
        _ partitions: [TopicPartition],
        _ call: (OpaquePointer?, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> rd_kafka_resp_err_t,
        _ what: String
    ) throws {
        guard !partitions.isEmpty else { return }
        let list = TopicPartitionList.make(partitions.map { ($0, nil) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = call(handle.pointer, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "\(what) \(partitions)") }
    }

    /// The partitions currently assigned to this consumer.
    public var assignment: Set<TopicPartition> { context.assignment.withLock { $0 } }

    /// The lag of every assigned partition: the high watermark last seen by a fetch minus this consumer's position.
    /// Reads librdkafka's cached values; never blocks on the network.
    public func lag() -> [PartitionLag] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle.pointer, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = rd_kafka_position(handle.pointer, list)
        return TopicPartitionList.elements(list).compactMap { topicPartition, position, _ in
            var low: Int64 = 0
            var high: Int64 = 0
            guard
                rd_kafka_get_watermark_offsets(handle.pointer, topicPartition.topic, topicPartition.partition, &low, &high)
                    == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0
            else { return nil }
            return PartitionLag(topicPartition: topicPartition, position: position >= 0 ? position : nil, highWatermark: high)
        }
    }

    /// Leaves the group (revoking partitions through the listener first) and stops the consumer. Further polls throw.
    /// - Throws: ``KafkaError`` when leaving fails; the consumer is closed all the same.
    public func close() async throws {
        let handle = self.handle
        let context = self.context
        try await queue.run {
            guard !context.isClosed else { return }
            context.isClosed = true
            let err = rd_kafka_consumer_close(handle.pointer)
            context.assignment.withLock { $0.removeAll() }
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "leave the group") }
        }
    }
}

extension KafkaConsumer {
    /// What the rebalance callback needs.
    ///
    /// `revokedDuringPoll` and `isClosed` are touched only on the consumer's queue: the callback runs inside
    /// `rd_kafka_consumer_poll` and `rd_kafka_consumer_close`, which run nowhere else. `assignment` is read from any
    /// thread and guarded by its mutex.
    final class Context: RDKafkaContext, @unchecked Sendable {
        let listener: (any KafkaRebalanceListener)?
        let assignment = Mutex<Set<TopicPartition>>([])
        var revokedDuringPoll: Set<TopicPartition> = []
        var isClosed = false

        init(logger: Logger, listener: (any KafkaRebalanceListener)?) {
            self.listener = listener
            super.init(logger: logger)
        }
    }
}

extension KafkaMessage {
    /// Copies messages out of librdkafka: every key and value into one shared buffer, headers individually.
    static func copying(_ polled: [(message: UnsafeMutablePointer<rd_kafka_message_t>, topicPartition: TopicPartition)]) -> [KafkaMessage] {
        guard !polled.isEmpty else { return [] }
        let total = polled.reduce(0) { $0 + $1.message.pointee.key_len + $1.message.pointee.len }
        var ranges: [(key: Range<Int>?, value: Range<Int>)] = []
        ranges.reserveCapacity(polled.count)
        let bytes = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            var offset = 0
            func append(_ source: UnsafeMutableRawPointer?, _ count: Int) -> Range<Int> {
                let start = offset
                if let source, count > 0, let base = buffer.baseAddress {
                    (base + offset).update(from: source.assumingMemoryBound(to: UInt8.self), count: count)
                    offset += count
                }
                return start..<offset
            }
            for (pointer, _) in polled {
                let message = pointer.pointee
                let key = message.key.map { append($0, message.key_len) }
                ranges.append((key, append(message.payload, message.len)))
            }
            initialized = offset
        }
        return zip(polled, ranges).map { entry, range in
            let (pointer, topicPartition) = entry
            var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
            return KafkaMessage(
                topicPartition: topicPartition,
                offset: pointer.pointee.offset,
                key: range.key.map { bytes[$0] },
                value: bytes[range.value],
                headers: headers(of: pointer),
                timestampMilliseconds: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp
            )
        }
    }

    private static func headers(of pointer: UnsafeMutablePointer<rd_kafka_message_t>) -> [KafkaHeader] {
        var headerList: OpaquePointer?
        guard rd_kafka_message_headers(pointer, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList else { return [] }
        var headers: [KafkaHeader] = []
        var index = 0
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(headerList, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            headers.append(
                KafkaHeader(key: name.map { String(cString: $0) } ?? "", value: value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
            index += 1
        }
        return headers
    }
}

extension Array where Element == KafkaMessage {
    /// The offset to commit per partition after this batch: the highest offset read + 1.
    public var nextOffsets: [TopicPartition: Int64] {
        reduce(into: [:]) { offsets, message in
            offsets[message.topicPartition] = Swift.max(offsets[message.topicPartition] ?? 0, message.offset + 1)
        }
    }

    /// The lowest offset read per partition: where to seek to read this batch again.
    public var firstOffsets: [TopicPartition: Int64] {
        reduce(into: [:]) { offsets, message in
            offsets[message.topicPartition] = Swift.min(offsets[message.topicPartition] ?? .max, message.offset)
        }
    }
}
