import ArgumentParser
import Dispatch
import Foundation
import Logging
import Shared

/// Hosts librdkafka's mock cluster for tests and the local demo: real Kafka protocol on loopback, topics created at
/// start, the bootstrap address printed and written to a file, running until SIGTERM or SIGINT.
@main
struct EmbeddedKafka: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an embedded Kafka (librdkafka's mock cluster) on loopback until SIGTERM.")

    @Option(help: "Number of brokers.")
    var brokers = 3

    @Option(name: .customLong("topic"), help: "A topic to create, as name:partitions (repeatable).")
    var topics: [TopicSpec] = []

    @Option(help: "Write the bootstrap address to this file once the cluster is up (written atomically).")
    var bootstrapFile: String?

    mutating func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "embedded-kafka")
        let cluster = try MockKafkaCluster(brokers: brokers, logger: logger)
        for topic in topics {
            try cluster.createTopic(topic.name, partitions: topic.partitions)
        }
        let bootstrap = cluster.bootstrapServers
        if let bootstrapFile {
            let temporary = bootstrapFile + ".tmp"
            try Data((bootstrap + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
            _ = rename(temporary, bootstrapFile)
        }
        print(bootstrap)
        fflush(nil)
        await Self.waitForTermination()
        withExtendedLifetime(cluster) {}
    }

    /// Suspends until SIGTERM or SIGINT.
    static func waitForTermination() async {
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let queue = DispatchQueue(label: "signals")
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = Once(continuation)
            for number in [SIGTERM, SIGINT] {
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler { once.resume() }
                source.resume()
                once.keep(source)
            }
        }
    }
}

/// Resumes a continuation once, keeping the signal sources alive until then. Touched only on the signal queue.
private final class Once: @unchecked Sendable {
    private var continuation: CheckedContinuation<Void, Never>?
    private var sources: [any DispatchSourceSignal] = []
    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }
    func keep(_ source: any DispatchSourceSignal) { sources.append(source) }
    func resume() {
        continuation?.resume()
        continuation = nil
    }
}

/// `name:partitions`.
struct TopicSpec: ExpressibleByArgument {
    let name: String
    let partitions: Int

    init?(argument: String) {
        let parts = argument.split(separator: ":")
        guard parts.count == 2, !parts[0].isEmpty, let partitions = Int(parts[1]), partitions > 0 else { return nil }
        name = String(parts[0])
        self.partitions = partitions
    }
}
