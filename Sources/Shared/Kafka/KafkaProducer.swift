import CRdKafka
import Logging
import Synchronization

/// An idempotent Kafka producer (`enable.idempotence=true`: no duplicates from its own retries, per-partition order
/// kept) whose ``send(_:)`` returns only when every message of the batch has its delivery report.
///
/// A dedicated thread serves librdkafka's delivery reports for the producer's whole life, and each ``send(_:)``
/// waits only for its own batch, so several batches can be in flight at once: the cost of crossing into async code
/// is paid once per batch, and batches overlap on the wire as they would in a bare librdkafka loop.
public final class KafkaProducer: Sendable {
    private let handle: RDKafkaHandle
    private let context: Context
    /// Where messages are handed to librdkafka (which may have to wait while its queue is full).
    private let enqueueQueue: BlockingQueue

    /// Creates a producer and starts its delivery-report thread.
    /// - Throws: ``ConfigurationError`` when librdkafka rejects a property.
    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws {
        let context = Context(logger: logger)
        let handle = try RDKafkaHandle(kind: .producer, properties: configuration.librdkafkaProperties, context: context) {
            rd_kafka_conf_set_dr_msg_cb($0, deliveryReport)
        }
        self.handle = handle
        self.context = context
        self.enqueueQueue = BlockingQueue(label: "rapport.kafka.producer.enqueue")
        // The poll loop holds the handle, not the producer: dropping the producer stops the loop (see deinit), and
        // the handle is destroyed when the loop lets go of it.
        BlockingQueue(label: "rapport.kafka.producer.poll").start {
            while !context.isStopped.load(ordering: .acquiring) {
                rd_kafka_poll(handle.pointer, 100)
            }
        }
    }

    deinit {
        context.isStopped.store(true, ordering: .releasing)
    }

    /// Publishes `messages` and waits for every delivery report.
    ///
    /// - Returns: One result per message, in the order given: where it landed, or the typed error it failed with.
    /// - Throws: ``KafkaError`` only when the producer itself is unusable (a fatal error, or closed); per-message
    ///   failures are in the results.
    public func send(_ messages: [KafkaOutboundMessage]) async throws -> [Result<KafkaDeliveryReport, KafkaError>] {
        if let fatal = handle.fatalError() { throw fatal }
        guard !context.isClosed.load(ordering: .acquiring) else {
            throw KafkaError(code: .destroyed, reason: "producer is closed", isRetriable: false)
        }
        guard !messages.isEmpty else { return [] }
        let handle = self.handle
        let context = self.context
        let enqueueQueue = self.enqueueQueue
        let batch = DeliveryBatch(count: messages.count)
        // The batch stays alive here until its last report is in; librdkafka only holds raw pointers into it.
        await withCheckedContinuation { continuation in
            batch.onComplete(continuation)
            enqueueQueue.start {
                // A batch usually goes to one topic: look its handle up once, not per message.
                var lastTopic: (name: String, handle: OpaquePointer)?
                for (index, message) in messages.enumerated() {
                    let opaque = batch.opaque(forIndex: index)
                    if lastTopic?.name != message.topic {
                        lastTopic = context.topicHandle(message.topic, client: handle.pointer).map { (message.topic, $0) }
                    }
                    guard let topic = lastTopic?.handle else {
                        let err = rd_kafka_last_error()
                        batch.failToEnqueue(index: index, KafkaError(err, "topic '\(message.topic)' refused"))
                        continue
                    }
                    // Serve reports that are already in as we go, as a bare librdkafka loop does: fewer wake-ups of
                    // the poll thread, and librdkafka's memory is released sooner.
                    if index % 64 == 63 { rd_kafka_poll(handle.pointer, 0) }
                    while true {
                        guard let error = Self.enqueue(message, topic: topic, opaque: opaque, on: handle.pointer) else { break }
                        if rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                            // The poll thread frees room as deliveries complete.
                            rd_kafka_error_destroy(error)
                            rd_kafka_poll(handle.pointer, 10)
                            continue
                        }
                        batch.failToEnqueue(index: index, KafkaError(consuming: error, "produce to \(message.topic)"))
                        break
                    }
                }
            }
        }
        let results = batch.results(for: messages)
        // A message that failed as the producer raised its fatal error (the head of the line lost, say) reports the
        // broker's code, not `_FATAL`: it is the producer's end all the same, and says so.
        guard results.contains(where: { if case .failure(let error) = $0 { !error.isFatal } else { false } }), let fatal = handle.fatalError() else {
            return results
        }
        return results.map { result in
            guard case .failure(let error) = result, !error.isFatal else { return result }
            return .failure(
                KafkaError(code: error.code, reason: "\(error.reason) (the producer's fatal error: \(fatal.reason))", isRetriable: false, isFatal: true))
        }
    }

    /// Hands one message to librdkafka (copying its bytes); `nil` on success, else the error to inspect and destroy.
    private static func enqueue(
        _ message: KafkaOutboundMessage, topic: OpaquePointer, opaque: UnsafeMutableRawPointer, on client: OpaquePointer
    ) -> OpaquePointer? {
        var headers: OpaquePointer?
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                if let value = header.value {
                    value.withUnsafeBytes { _ = rd_kafka_header_add(headers, header.key, -1, $0.baseAddress, $0.count) }
                } else {
                    _ = rd_kafka_header_add(headers, header.key, -1, nil, 0)
                }
            }
        }
        let error: OpaquePointer? = message.value.withUnsafeBytes { value in
            withKey(message.key) { key in
                // At most seven fields, on the stack: no allocation per message.
                withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 7) { fields in
                    var count = 0
                    func add(_ configure: (inout rd_kafka_vu_t) -> Void) {
                        var field = rd_kafka_vu_t()
                        configure(&field)
                        fields.initializeElement(at: count, to: field)
                        count += 1
                    }
                    add {
                        $0.vtype = RD_KAFKA_VTYPE_RKT
                        $0.u.rkt = topic
                    }
                    add {
                        $0.vtype = RD_KAFKA_VTYPE_VALUE
                        $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                        $0.u.mem.size = value.count
                    }
                    if let key {
                        add {
                            $0.vtype = RD_KAFKA_VTYPE_KEY
                            $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
                            $0.u.mem.size = key.count
                        }
                    }
                    add {
                        $0.vtype = RD_KAFKA_VTYPE_MSGFLAGS
                        $0.u.i = RD_KAFKA_MSG_F_COPY
                    }
                    add {
                        $0.vtype = RD_KAFKA_VTYPE_OPAQUE
                        $0.u.ptr = opaque
                    }
                    if let partition = message.partition {
                        add {
                            $0.vtype = RD_KAFKA_VTYPE_PARTITION
                            $0.u.i32 = partition
                        }
                    }
                    if let headers {
                        add {
                            $0.vtype = RD_KAFKA_VTYPE_HEADERS
                            $0.u.headers = headers
                        }
                    }
                    defer { fields.baseAddress?.deinitialize(count: count) }
                    return rd_kafka_produceva(client, fields.baseAddress, count)
                }
            }
        }
        // On success librdkafka owns the headers; on failure they are still ours.
        if error != nil, let headers { rd_kafka_headers_destroy(headers) }
        return error
    }

    private static func withKey<T>(_ key: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
        guard let key else { return body(nil) }
        return key.withUnsafeBytes { body($0) }
    }

    /// Waits until every message handed to librdkafka is delivered or failed.
    /// - Throws: ``KafkaError`` with ``KafkaError/Code/timedOut`` when some are still outstanding after `timeout`.
    public func flush(timeout: Duration = .seconds(10)) async throws {
        let handle = self.handle
        try await enqueueQueue.run {
            let err = rd_kafka_flush(handle.pointer, Int32(clamping: timeout.milliseconds))
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "flush producer") }
        }
    }

    /// Flushes, refuses further sends and stops the delivery-report thread. The client is destroyed with the last
    /// reference.
    /// - Throws: ``KafkaError`` when the flush times out (the producer is closed all the same).
    public func close(timeout: Duration = .seconds(10)) async throws {
        context.isClosed.store(true, ordering: .releasing)
        defer { context.isStopped.store(true, ordering: .releasing) }
        try await flush(timeout: timeout)
    }
}

extension KafkaProducer {
    /// The producer's flags, read by its threads, and its topic handles.
    final class Context: RDKafkaContext, @unchecked Sendable {
        let isClosed = Atomic<Bool>(false)
        let isStopped = Atomic<Bool>(false)
        /// `rd_kafka_topic_t` per topic name: created once, so that producing does not look the topic up by name
        /// for every message; destroyed just before the client.
        /// (Kept as bit patterns: an `OpaquePointer` is not `Sendable`.)
        private let topics = Mutex<[String: UInt]>([:])

        /// The handle of topic `name`; `nil` when librdkafka refuses the name (`rd_kafka_last_error` says why).
        func topicHandle(_ name: String, client: OpaquePointer) -> OpaquePointer? {
            let bits = topics.withLock { topics -> UInt in
                if let topic = topics[name] { return topic }
                let topic = UInt(bitPattern: rd_kafka_topic_new(client, name, nil))
                if topic != 0 { topics[name] = topic }
                return topic
            }
            return OpaquePointer(bitPattern: bits)
        }

        override func willDestroy(_ client: OpaquePointer) {
            let handles = topics.withLock { topics in
                defer { topics.removeAll() }
                return Array(topics.values)
            }
            for bits in handles { rd_kafka_topic_destroy(OpaquePointer(bitPattern: bits)) }
        }
    }
}

/// The delivery state of one ``KafkaProducer/send(_:)``: an outcome slot per message, written once by that message's
/// delivery report (or by the enqueue loop when librdkafka refused it), and a count of what is still pending. The
/// report that brings the count to zero resumes the waiting task, which then reads the slots.
private final class DeliveryBatch: @unchecked Sendable {
    // `@unchecked Sendable`: each slot is written by exactly one thread, once, before the pending count is
    // decremented (release); the waiting task reads them only after the count reached zero (acquire).
    /// What a message's opaque points to.
    struct Slot {
        let batch: Unmanaged<DeliveryBatch>
        var partition: Int32 = -1
        var offset: Int64 = -1
        var error: rd_kafka_resp_err_t = RD_KAFKA_RESP_ERR_NO_ERROR
    }

    private let slots: UnsafeMutableBufferPointer<Slot>
    private let pending: Atomic<Int>
    private var continuation: CheckedContinuation<Void, Never>?
    /// Messages librdkafka refused outright, with the full error (rare: guarded by a lock).
    private let enqueueErrors = Mutex<[Int: KafkaError]>([:])

    init(count: Int) {
        slots = .allocate(capacity: count)
        pending = Atomic(count)
        // Unretained: the sending task holds the batch until the last report is in.
        let reference = Unmanaged.passUnretained(self)
        for index in 0..<count { slots.initializeElement(at: index, to: Slot(batch: reference)) }
    }

    deinit {
        slots.deinitialize()
        slots.deallocate()
    }

    /// Set before the first message is enqueued.
    func onComplete(_ continuation: CheckedContinuation<Void, Never>) {
        self.continuation = continuation
    }

    /// What message `index`'s opaque points to. A batch has at least one message, so `slots` is allocated.
    func opaque(forIndex index: Int) -> UnsafeMutableRawPointer {
        guard let base = slots.baseAddress else { preconditionFailure("an empty delivery batch has no slots") }
        return UnsafeMutableRawPointer(base + index)
    }

    /// Files a delivery report; called on the producer's poll thread.
    static func deliver(_ opaque: UnsafeMutableRawPointer, partition: Int32, offset: Int64, error: rd_kafka_resp_err_t) {
        let slot = opaque.assumingMemoryBound(to: Slot.self)
        slot.pointee.partition = partition
        slot.pointee.offset = offset
        slot.pointee.error = error
        slot.pointee.batch.takeUnretainedValue().countDown()
    }

    func failToEnqueue(index: Int, _ error: KafkaError) {
        enqueueErrors.withLock { $0[index] = error }
        countDown()
    }

    private func countDown() {
        if pending.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            continuation?.resume()
        }
    }

    /// The outcome of each of `messages`, once every report is in.
    func results(for messages: [KafkaOutboundMessage]) -> [Result<KafkaDeliveryReport, KafkaError>] {
        let refused = enqueueErrors.withLock { $0 }
        return messages.indices.map { index in
            if let error = refused[index] { return .failure(error) }
            let slot = slots[index]
            let topic = messages[index].topic
            guard slot.error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                let error = KafkaError(slot.error, "deliver to \(topic)")
                guard slot.error == RD_KAFKA_RESP_ERR__FATAL else { return .failure(error) }
                return .failure(KafkaError(code: error.code, reason: error.reason, isRetriable: false, isFatal: true))
            }
            return .success(KafkaDeliveryReport(topicPartition: TopicPartition(topic: topic, partition: slot.partition), offset: slot.offset))
        }
    }
}

/// librdkafka's delivery-report callback: files the outcome in the slot the message's opaque points to.
private let deliveryReport: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
    _, message, _ in
    guard let message, let opaque = message.pointee._private else { return }
    DeliveryBatch.deliver(opaque, partition: message.pointee.partition, offset: message.pointee.offset, error: message.pointee.err)
}
