import Foundation
import Logging
import Shared

/// A worker whose behaviour is the pipeline's test and benchmark subject: per event it writes two rows and emits one
/// command. It reads `SHOPPER_EVENTS_TOPIC` and writes to `EMAIL_COMMANDS_TOPIC`.
@main
struct EchoWorker: WorkerDefinition {
    static let descriptor = WorkerDescriptor(
        name: "EchoWorker",
        component: "echo",
        defaultGroupID: "rapport-echo",
        defaultHTTPPort: 8089,
        inputTopic: { $0.shopperEvents },
        migrations: { try Migration.load(component: "echo", bundle: .module) },
        makeHandler: { topics, environment in
            EchoHandler(
                commandsTopic: topics.emailCommands, failing: Set((try environment.string("ECHO_FAIL_EVENTS") ?? "").split(separator: ",").map(String.init)))
        }
    )

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}

/// Writes an effect and an audit row per event (two set-based statements per batch) and echoes one command.
///
/// Two properties exist for the pipeline's tests: `hang_ms` blocks the handler that long (a call that never returns,
/// for the liveness probe and the drain timeout), and `pad_bytes` makes the echoed command that much heavier (a
/// command the producer must refuse). `ECHO_FAIL_EVENTS` (event names, comma-separated) is a bug to deploy and fix:
/// the handler throws on those events, every time.
struct EchoHandler: PipelineHandler {
    let commandsTopic: String
    var failing: Set<String> = []

    struct Bug: Error, CustomStringConvertible {
        let event: String
        var description: String { "EchoWorker cannot handle \(event) (ECHO_FAIL_EVENTS)" }
    }

    func handle(_ events: [InboundEvent<SegmentMessage>], connection: PostgresConnection) throws -> [OutboundCommand] {
        guard !events.isEmpty else { return [] }
        for event in events {
            if let name = event.message.event, failing.contains(name) { throw Bug(event: name) }
            if let hang = event.message.properties["hang_ms"]?.numberValue {
                // Said first, so that a test knows the hang has begun (the probe alone cannot tell it from a slow turn).
                Logger(label: "EchoWorker").notice("handler hanging", metadata: ["hang_ms": "\(Int(hang))"])
                Thread.sleep(forTimeInterval: hang / 1000)
            }
        }
        let sequences = events.map { Int64($0.message.properties["sequence"]?.numberValue ?? 0) }
        try connection.execute(
            .insert(
                into: "echo_effects", Array(zip(events, sequences)),
                [
                    .init("store_id", "text", \.0.message.storeID), .init("message_id", "text", \.0.message.messageID),
                    .init("shopper_key", "text", \.0.message.shopperKey), .init("sequence", "bigint", \.1),
                    .init("source_partition", "integer", \.0.source.topicPartition.partition), .init("source_offset", "bigint", \.0.source.offset),
                ]))
        try connection.execute(
            .insert(
                into: "echo_audit", events,
                [
                    .init("store_id", "text", \.message.storeID), .init("message_id", "text", \.message.messageID),
                    .init("event", "text") { $0.message.event ?? $0.message.kind.rawValue }, .init("at", "timestamptz", \.message.timestamp),
                ]))
        return zip(events, sequences).map { event, sequence in
            let message = event.message
            let id = CommandID.make(store: message.storeID, causation: message.messageID, name: "echo")
            // Deterministic content: a command sent twice is byte-for-byte the same.
            var body: [String: JSONValue] = [
                "command_id": .string(id), "type": .string("Echo"), "store_id": .string(message.storeID),
                "shopper_key": .string(message.shopperKey), "sequence": .number(Double(sequence)),
                "causation_id": .string(message.messageID),
                "created_at": .string(message.timestamp.rfc3339),
            ]
            if let pad = message.properties["pad_bytes"]?.numberValue { body["pad"] = .string(String(repeating: "p", count: Int(pad))) }
            let value = JSONValue.object(body).encoded()
            return event.caused(
                OutboundCommand(
                    topic: commandsTopic, key: message.shopperKey, name: "echo", storeID: message.storeID, causationID: message.messageID,
                    value: value))
        }
    }
}
