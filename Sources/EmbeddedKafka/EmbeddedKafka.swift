import ArgumentParser
import Dispatch
import Foundation
import KafkaTesting
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

    @Option(name: .customLong("topic-error"), help: "A topic whose metadata answers an error code, as name:code (repeatable; 3 = the topic does not exist).")
    var topicErrors: [TopicSpec] = []

    @Option(help: "Watch this folder for command files (*.cmd, one line: 'topic-error NAME CODE'), for tests that change the cluster while clients use it.")
    var controlDir: String?

    mutating func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "embedded-kafka")
        let cluster = try MockKafkaCluster(brokers: brokers, logger: logger)
        for topic in topics {
            try cluster.createTopic(topic.name, partitions: topic.partitions)
        }
        for topic in topicErrors {
            cluster.setTopicError(topic.name, KafkaError.Code(rawValue: Int32(topic.partitions)))
        }
        let control = controlDir.map { ControlFolder(path: $0, cluster: cluster, logger: logger) }
        control?.start()
        let bootstrap = cluster.bootstrapServers
        if let bootstrapFile {
            let temporary = bootstrapFile + ".tmp"
            try Data((bootstrap + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
            _ = rename(temporary, bootstrapFile)
        }
        print(bootstrap)
        fflush(nil)
        await Self.waitForTermination()
        control?.stop()
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

/// Runs the command files tests drop into a folder, each once, then renames it `*.done`.
private final class ControlFolder: @unchecked Sendable {
    // `@unchecked Sendable`: `stopped` is touched under `lock`; the cluster's functions are thread-safe.
    private let path: String
    private let cluster: MockKafkaCluster
    private let logger: Logger
    private let lock = NSLock()
    private var stopped = false

    init(path: String, cluster: MockKafkaCluster, logger: Logger) {
        self.path = path
        self.cluster = cluster
        self.logger = logger
    }

    func start() {
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        Thread.detachNewThread { [self] in
            while !lock.withLock({ stopped }) {
                runPending()
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    func stop() { lock.withLock { stopped = true } }

    private func runPending() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for name in names.sorted() where name.hasSuffix(".cmd") {
            let file = (path as NSString).appendingPathComponent(name)
            let words = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(whereSeparator: \.isWhitespace).map(String.init)
            if words.count == 3, words[0] == "topic-error", let code = Int32(words[2]) {
                cluster.setTopicError(words[1], KafkaError.Code(rawValue: code))
                logger.info("topic error set", metadata: ["topic": "\(words[1])", "code": "\(code)"])
            } else {
                logger.error("unknown control command", metadata: ["file": "\(name)"])
            }
            _ = rename(file, file + ".done")
        }
    }
}

/// `name:number`: a topic and its partition count, or a topic and an error code.
struct TopicSpec: ExpressibleByArgument {
    let name: String
    let partitions: Int

    init?(argument: String) {
        let parts = argument.split(separator: ":")
        guard parts.count == 2, !parts[0].isEmpty, let partitions = Int(parts[1]), partitions >= 0 else { return nil }
        name = String(parts[0])
        self.partitions = partitions
    }
}
