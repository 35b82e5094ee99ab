import CRdKafka
import Logging

/// The object behind a client's configuration opaque: every C callback recovers it with `rd_kafka_opaque` and
/// `Unmanaged`. Subclasses add what their callbacks need (the consumer's rebalance state, the producer's
/// delivery tracking).
///
/// `@unchecked Sendable`: librdkafka calls into it from its own threads; subclasses document which thread touches
/// each of their mutable fields.
class RDKafkaContext: @unchecked Sendable {
    /// Where librdkafka's own log lines go.
    let logger: Logger
    /// The client's topic names, for its message loops.
    let topicNames = TopicNameCache()

    init(logger: Logger) {
        self.logger = logger
    }

    /// Called just before the client is destroyed: release what must not outlive it (topic handles).
    func willDestroy(_ client: OpaquePointer) {}

    /// Recovers the context of a client created by ``RDKafkaHandle``.
    static func of(_ client: OpaquePointer?) -> Self? {
        guard let client, let opaque = rd_kafka_opaque(client) else { return nil }
        return Unmanaged<RDKafkaContext>.fromOpaque(opaque).takeUnretainedValue() as? Self
    }
}

/// Forwards librdkafka's syslog-levelled log lines to swift-log.
private let forwardLog: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
    client, level, facility, line in
    guard let context = RDKafkaContext.of(client), let line else { return }
    let swiftLevel: Logger.Level =
        switch level {
        case ...3: .error
        case 4: .warning
        case 5, 6: .info
        default: .debug
        }
    context.logger.log(
        level: swiftLevel,
        "\(String(cString: line))",
        metadata: [LogKey.kafkaFacility: .string(facility.map { String(cString: $0) } ?? "")]
    )
}

/// Owns one `rd_kafka_t` and destroys it in `deinit`; the context its callbacks use stays alive until after
/// `rd_kafka_destroy` has returned.
///
/// `@unchecked Sendable`: librdkafka handles are thread-safe, and both stored properties are immutable.
package final class RDKafkaHandle: @unchecked Sendable {
    /// The client kind.
    enum Kind {
        case consumer, producer
    }

    package let pointer: OpaquePointer
    private let context: RDKafkaContext

    /// Creates a client from `properties`.
    ///
    /// - Parameters:
    ///   - kind: Consumer or producer.
    ///   - properties: librdkafka properties.
    ///   - context: The object every callback receives as the opaque; retained by the handle.
    ///   - configure: Installs further callbacks on the configuration before the client is created.
    /// - Throws: ``ConfigurationError`` naming the property librdkafka rejected.
    init(
        kind: Kind,
        properties: [String: String],
        context: RDKafkaContext,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError(code: .fatal, reason: "rd_kafka_conf_new failed", isRetriable: false)
        }
        var message = [CChar](repeating: 0, count: 512)
        for (property, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, property, value, &message, message.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw ConfigurationError(property, String(cBuffer: message))
            }
        }
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_log_cb(conf, forwardLog)
        configure(conf)
        // rd_kafka_new takes `conf` only when it succeeds.
        guard let client = rd_kafka_new(kind == .consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, conf, &message, message.count)
        else {
            rd_kafka_conf_destroy(conf)
            throw ConfigurationError("kafka", String(cBuffer: message))
        }
        self.pointer = client
        self.context = context
    }

    deinit {
        context.willDestroy(pointer)
        rd_kafka_destroy(pointer)
        withExtendedLifetime(context) {}
    }

    /// A fatal error the client has raised, if any (idempotent producers raise one when ordering cannot be kept).
    func fatalError() -> KafkaError? {
        var message = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(pointer, &message, message.count)
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return KafkaError(code: .init(err), reason: String(cBuffer: message), isRetriable: false, isFatal: true)
    }
}

extension RDKafkaHandle {
    /// A client for hosting librdkafka's mock cluster (`KafkaTesting`): a producer that never produces, giving the
    /// mock its threads and its logging.
    package static func mockClusterHost(logger: Logger) throws -> RDKafkaHandle {
        try RDKafkaHandle(kind: .producer, properties: ["log_level": "3", "socket.nagle.disable": "true"], context: RDKafkaContext(logger: logger))
    }
}
