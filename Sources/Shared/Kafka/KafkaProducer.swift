import CRdKafka
import Logging

/// An idempotent Kafka producer (`enable.idempotence=true`: no duplicates from its own retries, per-partition order
/// kept) whose ``send(_:)`` returns only when every message of the batch has its delivery report.
///
/// Batches are sent one at a time on the producer's own ``BlockingQueue``; the cost of crossing into async code is
/// paid once per batch, not per message.
public final class KafkaProducer: Sendable {
    private let handle: RDKafkaHandle
    private let context: Context
    private let queue: BlockingQueue

    /// Creates a producer.
    /// - Throws: ``ConfigurationError`` when librdkafka rejects a property.
    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws {
        let context = Context(logger: logger)
        handle = try RDKafkaHandle(kind: .producer, properties: configuration.librdkafkaProperties, context: context) {
            rd_kafka_conf_set_dr_msg_cb($0, deliveryReport)
        }
        self.context = context
        self.queue = BlockingQueue(label: "rapport.kafka.producer")
    }

    /// Publishes `messages` and waits for every delivery report.
    ///
    /// - Returns: One result per message, in the order given: where it landed, or the typed error it failed with.
    /// - Throws: ``KafkaError`` only when the producer itself is unusable (a fatal error, or closed); per-message
    ///   failures are in the results.
    public func send(_ messages: [KafkaOutboundMessage]) async throws -> [Result<KafkaDeliveryReport, KafkaError>] {
        let handle = self.handle
        let context = self.context
        return try await queue.run {
            if let fatal = handle.fatalError() { throw fatal }
            guard !context.isClosed else { throw KafkaError(code: .destroyed, reason: "producer is closed", isRetriable: false) }
            context.begin(count: messages.count)
            for (index, message) in messages.enumerated() {
                while true {
                    guard let error = Self.enqueue(message, index: index, on: handle.pointer) else { break }
                    let code = KafkaError.Code(rawValue: rd_kafka_error_code(error).rawValue)
                    if code == .queueFull {
                        rd_kafka_error_destroy(error)
                        rd_kafka_poll(handle.pointer, 10)
                        continue
                    }
                    context.record(index: index, .failure(KafkaError(consuming: error, "produce to \(message.topic)")))
                    break
                }
            }
            while context.pending > 0 {
                rd_kafka_poll(handle.pointer, 50)
            }
            return context.finish()
        }
    }

    /// Hands one message to librdkafka (copying its bytes); `nil` on success, else the error to inspect and destroy.
    private static func enqueue(_ message: KafkaOutboundMessage, index: Int, on client: OpaquePointer) -> OpaquePointer? {
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
        let error: OpaquePointer? = message.topic.withCString { topic in
            message.value.withUnsafeBytes { value in
                withKey(message.key) { key in
                    var fields: [rd_kafka_vu_t] = []
                    fields.reserveCapacity(7)
                    var field = rd_kafka_vu_t()
                    field.vtype = RD_KAFKA_VTYPE_TOPIC
                    field.u.cstr = topic
                    fields.append(field)
                    field = rd_kafka_vu_t()
                    field.vtype = RD_KAFKA_VTYPE_VALUE
                    field.u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                    field.u.mem.size = value.count
                    fields.append(field)
                    if let key {
                        field = rd_kafka_vu_t()
                        field.vtype = RD_KAFKA_VTYPE_KEY
                        field.u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
                        field.u.mem.size = key.count
                        fields.append(field)
                    }
                    field = rd_kafka_vu_t()
                    field.vtype = RD_KAFKA_VTYPE_MSGFLAGS
                    field.u.i = RD_KAFKA_MSG_F_COPY
                    fields.append(field)
                    field = rd_kafka_vu_t()
                    field.vtype = RD_KAFKA_VTYPE_OPAQUE
                    field.u.ptr = UnsafeMutableRawPointer(bitPattern: index + 1)
                    fields.append(field)
                    if let partition = message.partition {
                        field = rd_kafka_vu_t()
                        field.vtype = RD_KAFKA_VTYPE_PARTITION
                        field.u.i32 = partition
                        fields.append(field)
                    }
                    if let headers {
                        field = rd_kafka_vu_t()
                        field.vtype = RD_KAFKA_VTYPE_HEADERS
                        field.u.headers = headers
                        fields.append(field)
                    }
                    return rd_kafka_produceva(client, &fields, fields.count)
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
        try await queue.run {
            let err = rd_kafka_flush(handle.pointer, Int32(clamping: timeout.milliseconds))
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "flush producer") }
        }
    }

    /// Flushes and refuses further sends. The client itself is destroyed with the last reference.
    /// - Throws: ``KafkaError`` when the flush times out.
    public func close(timeout: Duration = .seconds(10)) async throws {
        let context = self.context
        try await flush(timeout: timeout)
        try await queue.run { context.isClosed = true }
    }
}

extension KafkaProducer {
    /// The delivery state of the batch being sent. Touched only on the producer's queue: delivery reports are served
    /// by `rd_kafka_poll`, which is called nowhere else.
    final class Context: RDKafkaContext, @unchecked Sendable {
        private var results: [Result<KafkaDeliveryReport, KafkaError>?] = []
        private(set) var pending = 0
        var isClosed = false

        func begin(count: Int) {
            results = Array(repeating: nil, count: count)
            pending = count
        }

        func record(index: Int, _ result: Result<KafkaDeliveryReport, KafkaError>) {
            guard results.indices.contains(index), results[index] == nil else { return }
            results[index] = result
            pending -= 1
        }

        func finish() -> [Result<KafkaDeliveryReport, KafkaError>] {
            defer { results = [] }
            return results.map { $0 ?? .failure(KafkaError(code: .fatal, reason: "no delivery report", isRetriable: true)) }
        }
    }
}

/// librdkafka's delivery-report callback: files the report under the message's index in the batch being sent.
private let deliveryReport: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
    client, message, _ in
    guard let client, let message, let context = KafkaProducer.Context.of(client) else { return }
    let index = Int(bitPattern: message.pointee._private) - 1
    let topic = String(cString: rd_kafka_topic_name(message.pointee.rkt))
    let err = message.pointee.err
    if err == RD_KAFKA_RESP_ERR_NO_ERROR {
        let report = KafkaDeliveryReport(
            topicPartition: TopicPartition(topic: topic, partition: message.pointee.partition), offset: message.pointee.offset)
        context.record(index: index, .success(report))
    } else {
        var error = KafkaError(err, "deliver to \(topic)")
        if err == RD_KAFKA_RESP_ERR__FATAL {
            error = KafkaError(code: error.code, reason: error.reason, isRetriable: false, isFatal: true)
        }
        context.record(index: index, .failure(error))
    }
}
