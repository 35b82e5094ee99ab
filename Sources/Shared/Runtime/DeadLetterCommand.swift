import ArgumentParser
import Foundation
import Logging

/// `<Worker> dlq`: the operator's commands on the worker's dead-letter topic.
public struct DeadLetterCommand<Worker: WorkerDefinition>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "dlq", abstract: "Work with the dead-letter topic of the worker's input.", subcommands: [ReplayDeadLetters<Worker>.self])
    }

    public init() {}
}

/// `<Worker> dlq replay`: republishes chosen dead letters to their source topic (``DeadLetterReplay``), one JSON line
/// per chosen dead letter on stdout and a count on stderr. Reads Kafka only (`KAFKA_*`, the topic variables); a bad
/// argument, or a replay refused before anything was published, is one line on stderr and exit status 1.
public struct ReplayDeadLetters<Worker: WorkerDefinition>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "replay",
            abstract: "Republish dead letters to the topic they came from: original key, value and headers, the dlq.* headers dropped.",
            discussion: """
                Choose with --from-offset (every dead letter from that offset of the dead-letter topic on), --message-id \
                (repeatable; each must be found, else nothing is replayed), or both; narrow with --partition and --reason. \
                The topic is read up to its high watermarks as of the start. Truncated copies (dlq.truncated) are skipped: \
                they do not hold the original. Replaying twice is safe: the worker applies a messageId once.
                """)
    }

    @Option(help: "Replay dead letters at this offset of the dead-letter topic or later.")
    var fromOffset: Int64?

    @Option(name: .customLong("message-id"), help: "Replay the dead letters of this Segment messageId (repeatable).")
    var messageIDs: [String] = []

    @Option(help: "Only this partition of the dead-letter topic.")
    var partition: Int32?

    @Option(help: "Only dead letters of this dlq.reason (\(DecodeFailure.Reason.allCases.map(\.rawValue).joined(separator: ", "))).")
    var reason: String?

    @Option(help: "The dead-letter topic (default: the worker's input topic + \"-dlq\").")
    var topic: String?

    @Flag(help: "Say what would be replayed; publish nothing.")
    var dryRun = false

    public init() {}

    public func validate() throws {
        guard fromOffset != nil || !messageIDs.isEmpty else { throw ValidationError("give --from-offset, --message-id, or both") }
        if let fromOffset, fromOffset < 0 { throw ValidationError("--from-offset must be 0 or more") }
        if let partition, partition < 0 { throw ValidationError("--partition must be 0 or more") }
        if let reason, DecodeFailure.Reason(rawValue: reason) == nil {
            throw ValidationError("--reason must be one of \(DecodeFailure.Reason.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    public func run() async throws {
        let environment = Environment()
        let configuration = try WorkerConfiguration(descriptor: Worker.descriptor, environment: environment)
        var logger = Logger(label: "\(Worker.descriptor.name) dlq replay")
        logger.logLevel = .critical
        let inputTopic = Worker.descriptor.inputTopic(configuration.topics)
        let topic = self.topic ?? Topics.deadLetter(of: inputTopic)
        // Assigned, never subscribed: the group id only names the client; nothing is committed.
        let reading = KafkaConsumerConfiguration(kafka: configuration.consumer.kafka, groupID: configuration.consumer.groupID + "-dlq-replay")
        let consumer = try KafkaConsumer(configuration: reading, logger: logger)
        let producer = try KafkaProducer(configuration: configuration.producer, logger: logger)
        let selection = DeadLetterReplay.Selection(
            fromOffset: fromOffset, partition: partition, messageIDs: Set(messageIDs), reason: reason.flatMap(DecodeFailure.Reason.init(rawValue:)))
        let outcomes: [DeadLetterReplay.Outcome]
        do {
            outcomes = try await DeadLetterReplay(consumer: consumer, producer: producer, inputTopic: inputTopic).replay(
                topic: topic, selection: selection, dryRun: dryRun)
        } catch {
            try? await consumer.close()
            try? await producer.close()
            throw error
        }
        try? await consumer.close()
        try await producer.close()
        for outcome in outcomes { print(String(decoding: outcome.json.encoded(), as: UTF8.self)) }
        let replayed = outcomes.filter { $0.replayedTo != nil }.count
        let skipped = outcomes.filter { $0.skipped != nil }.count
        let failed = outcomes.filter { $0.failed != nil }.count
        let verb = dryRun ? "would replay" : "replayed"
        FileHandle.standardError.write(
            Data(
                "\(verb) \(dryRun ? outcomes.count - skipped : replayed) of \(outcomes.count) chosen dead letters of \(topic); \(skipped) skipped, \(failed) failed\n"
                    .utf8))
        if failed > 0 { throw ExitCode(1) }
    }
}
