import ArgumentParser
import Foundation
import Logging
import Shared

/// Reads a topic as a member of a consumer group and prints one JSON line per message; with `--commit`, commits
/// after each batch and prints the committed offsets.
struct Consume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consume a topic in a group, printing a JSON line per message and per commit.")

    @Option(help: "The topic to read.")
    var topic: String

    @Option(help: "The consumer group (default: KAFKA_GROUP_ID, else rapport-tool).")
    var group: String?

    @Flag(help: "Commit offsets synchronously after each batch and print {\"committed\":…}.")
    var commit = false

    @Option(help: "Stop after this many messages.")
    var max: Int?

    @Option(help: "Stop after this many seconds without a message once partitions are assigned (0: never).")
    var idleExit: Double = 0

    @Option(help: "Messages per poll.")
    var batch = 500

    @Option(help: "Pretend each batch takes this long to process (milliseconds), before committing it.")
    var paceMs = 0

    mutating func run() async throws {
        let environment = Environment()
        let groupID = try group ?? environment.string("KAFKA_GROUP_ID", default: "rapport-tool")
        let logger = Logger(label: "rapport-tool")
        let kafka = try KafkaConfiguration(environment: environment, clientID: "rapport-tool")
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka, groupID: groupID), logger: logger)
        try consumer.subscribe(to: [topic])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var seen = 0
        var idleSince = ContinuousClock.now
        while max.map({ seen < $0 }) ?? true {
            let messages = try await consumer.poll(maxMessages: batch, maxWait: .milliseconds(200))
            if messages.isEmpty {
                // Joining the group takes seconds: idleness counts only while partitions are held.
                if consumer.assignment.isEmpty { idleSince = .now }
                if idleExit > 0, ContinuousClock.now - idleSince > .milliseconds(Int(idleExit * 1000)) { break }
                continue
            }
            idleSince = .now
            // Messages are printed before their commit and the commit after it, so the output never claims a
            // commit that did not happen, and a kill between the two loses no message from the record.
            var out = Data()
            for message in messages {
                out.append(try encoder.encode(PrintedMessage(message)))
                out.append(0x0A)
            }
            FileHandle.standardOutput.write(out)
            seen += messages.count
            if paceMs > 0 { try await Task.sleep(for: .milliseconds(paceMs)) }
            if commit {
                let offsets = messages.nextOffsets
                do {
                    try await consumer.commit(offsets)
                } catch let error as KafkaError where error.isRetriable {
                    // Refused while the group rebalances: the next batch's commit covers these offsets.
                    logger.warning("commit refused", metadata: ["error": "\(error)"])
                    continue
                }
                let committed = Dictionary(uniqueKeysWithValues: offsets.map { ("\($0.key.partition)", $0.value) })
                FileHandle.standardOutput.write(try encoder.encode(["committed": committed]) + Data([0x0A]))
            }
        }
        try await consumer.close()
    }
}

/// One consumed message as printed.
struct PrintedMessage: Encodable {
    let partition: Int32
    let offset: Int64
    let key: String?
    let value: String
    let headers: [String: String]

    init(_ message: KafkaMessage) {
        partition = message.topicPartition.partition
        offset = message.offset
        key = message.key.map { String(decoding: $0, as: UTF8.self) }
        value = String(decoding: message.value, as: UTF8.self)
        headers = Dictionary(message.headers.map { ($0.key, $0.value.map { String(decoding: $0, as: UTF8.self) } ?? "") }) { first, _ in first }
    }
}
