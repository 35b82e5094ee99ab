import ArgumentParser
import Foundation
import KafkaTesting
import Logging
import Shared

/// A worker executable (built beside `rapport-bench`) run as its own process for a benchmark, and how long it takes
/// to drain a backlog.
struct BenchWorker {
    let process: Process

    /// Starts `executable` (a path, or the name of an executable built beside this one) with `environment` added to
    /// this process's own; its output goes to `log` when given.
    init(_ executable: String, arguments: [String] = [], environment: [String: String], log: String? = nil) throws {
        process = Process()
        process.executableURL =
            executable.contains("/")
            ? URL(fileURLWithPath: executable)
            : URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        if let log {
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: log)
        } else {
            process.standardOutput = FileHandle.nullDevice
        }
        try process.run()
    }

    /// Events per second from the first unit of work done to the last: `done` is polled every 20 ms until it reaches
    /// `total` and `settled` holds — work the worker defers past the batches (a fold) counts too (start-up, migrations
    /// and the group join are not counted).
    func drainRate(total: Int, done: () async throws -> Int, settled: () async throws -> Bool = { true }) async throws -> Double {
        var first: ContinuousClock.Instant?
        while true {
            guard process.isRunning else { throw BenchError("\(process.executableURL?.lastPathComponent ?? "worker") exited early") }
            let count = try await done()
            if count > 0, first == nil { first = .now }
            if count >= total, try await settled() { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        return Double(total) / (ContinuousClock.now - (first ?? .now)).seconds
    }

    /// The highest resident memory the process reached, in MB (`VmHWM`).
    var peakResidentMegabytes: Double {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return .nan }
        return kilobytes / 1024
    }

    /// Waits for the process to exit.
    /// - Throws: ``BenchError`` when it failed.
    func waitForSuccess() throws {
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError("\(process.executableURL?.lastPathComponent ?? "worker") \(process.arguments ?? []) exited with \(process.terminationStatus)")
        }
    }

    /// SIGTERM, and waits for the exit; SIGKILL after `grace` (the peer's consumer can hang leaving the mock
    /// cluster's group).
    func stop(grace: Duration = .seconds(20)) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + grace
        while process.isRunning, ContinuousClock.now < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

extension Logger {
    /// The benchmark's logger: quiet, its output is the figures on stdout.
    static var bench: Logger {
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        return logger
    }
}

/// A benchmark that could not run to the end.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A throwaway database on the server `DATABASE_URL` names, dropped by ``drop()``.
struct BenchDatabase {
    let name: String
    let url: String
    private let admin: PostgresClient

    init(prefix: String, logger: Logger) async throws {
        let adminURL = try Environment().string("DATABASE_URL", default: "postgresql://localhost:5432/rapport")
        name = "\(prefix)_\(UInt32.random(in: 0...UInt32.max))"
        admin = PostgresClient(configuration: PostgresConfiguration(url: adminURL), logger: logger)
        let name = self.name
        _ = try await admin.withConnection { try $0.execute("CREATE DATABASE \(identifier: name)") }
        url = PostgresConfiguration(url: adminURL).replacingDatabase(with: name).url
    }

    /// A client on the database.
    func client(logger: Logger) -> PostgresClient {
        PostgresClient(configuration: PostgresConfiguration(url: url), logger: logger)
    }

    func drop() async throws {
        let name = self.name
        _ = try await admin.withConnection { try $0.execute("DROP DATABASE \(identifier: name) WITH (FORCE)") }
        admin.close()
    }
}

/// The options every worker benchmark takes for its harness: the topics' partitions, the workers' batch size and the
/// backlog's record batch size.
struct HarnessOptions: ParsableArguments {
    @Option(help: "Partitions of every topic.")
    var partitions = 8

    @Option(help: "The workers' BATCH_SIZE.")
    var batchSize = 2000

    @Option(
        help:
            "The backlog's record batches at most this many bytes (librdkafka's batch.size; default 1 MB). Storefronts publishing as shoppers act send small batches; 1 MB batches reach the worker one or two partitions per batch."
    )
    var producerBatchBytes: Int?

    /// A harness with these options.
    func harness(logger: Logger) throws -> BenchHarness {
        try BenchHarness(partitions: partitions, batchSize: batchSize, producerBatchBytes: producerBatchBytes, logger: logger)
    }

    /// Starts a worker benchmark: its first line (`rapport-bench <name> — cores, <detail>, these options`), then the
    /// pipeline's own figure on the same harness (EchoWorker draining `events`), the yardstick the worker is read against.
    func start(_ name: String, detail: String, events: Int, logger: Logger) async throws -> (harness: BenchHarness, echo: (rate: Double, peak: Double)) {
        let harness = try harness(logger: logger)
        print("rapport-bench \(name) — \(ProcessInfo.processInfo.activeProcessorCount) cores, \(detail), \(summary)")
        let echo = try await harness.pipelineRate(events: events)
        print(String(format: "  pipeline (EchoWorker: 2 rows + 1 command)   %8.0f events/s   peak RSS %5.1f MB", echo.rate, echo.peak))
        fflush(nil)
        return (harness, echo)
    }

    /// For a benchmark's first line.
    var summary: String {
        "BATCH_SIZE \(batchSize), \(partitions) partitions, backlog in record batches of \(producerBatchBytes.map { "\($0) bytes" } ?? "up to 1 MB")"
    }
}

/// What the worker benchmarks share: an in-process mock cluster with the command topics, a producer, and a run that
/// drains a backlog with one worker process on a fresh database.
final class BenchHarness {
    let cluster: MockKafkaCluster
    let producer: KafkaProducer
    let partitions: Int
    let batchSize: Int
    let logger: Logger
    private var run = 0

    /// - Parameter producerBatchBytes: The backlog's record batches at most this large (`batch.size`; librdkafka's
    ///   1 MB when `nil`). The mock broker serves a partition a record batch at a time, so 1 MB batches reach a worker
    ///   one or two partitions per batch of 2,000 events — and so one or two of its transactions at a time.
    init(partitions: Int, batchSize: Int, producerBatchBytes: Int? = nil, logger: Logger) throws {
        cluster = try MockKafkaCluster(brokers: 1, logger: logger)
        for topic in ["bench-email", "bench-recs"] { try cluster.createTopic(topic, partitions: partitions) }
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = [cluster.bootstrapServers]
        if let producerBatchBytes { kafka.properties["batch.size"] = String(producerBatchBytes) }
        producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: logger)
        self.partitions = partitions
        self.batchSize = batchSize
        self.logger = logger
    }

    /// The environment a worker process of a run gets.
    func environment(database: BenchDatabase, inputVariable: String, topic: String, group: String) -> [String: String] {
        [
            "DATABASE_URL": database.url, "KAFKA_BROKERS": cluster.bootstrapServers, inputVariable: topic,
            "EMAIL_COMMANDS_TOPIC": "bench-email", "RECOMMENDATION_COMMANDS_TOPIC": "bench-recs", "BATCH_SIZE": "\(batchSize)",
            "BATCH_WAIT_MS": "20", "HTTP_PORT": "0", "LOG_LEVEL": "warning", "KAFKA_GROUP_ID": group, "KAFKA_FETCH_WAIT_MAX_MS": "10",
        ]
    }

    /// Drains `backlog` (published to a topic of its own, which `inputVariable` names to the worker) with
    /// `executable` on a fresh database, after `prepare` (seeding); events/s from the first batch to the last, and the
    /// peak RSS. The run ends when `settled` also holds (work the worker defers past its batches is done). `inspect` sees
    /// the database before it is dropped.
    func drain(
        _ executable: String, inputVariable: String, extraEnvironment: [String: String] = [:], log: String? = nil,
        prepare: (BenchDatabase, String) async throws -> Void = { _, _ in }, backlog: (String) -> [KafkaOutboundMessage],
        settled: (PostgresClient) async throws -> Bool = { _ in true }, inspect: (BenchDatabase) async throws -> Void = { _ in }
    ) async throws -> (rate: Double, peak: Double) {
        run += 1
        let topic = "bench-\(executable.lowercased())-\(run)"
        let group = "bench-\(executable)-\(run)"
        try cluster.createTopic(topic, partitions: partitions)
        try cluster.createTopic(Topics.deadLetter(of: topic), partitions: 1)
        let database = try await BenchDatabase(prefix: "rapport_bench_\(executable.lowercased())", logger: logger)
        try await prepare(database, group)
        let messages = backlog(topic)
        try await publish(messages)
        let worker = try BenchWorker(
            executable,
            environment: environment(database: database, inputVariable: inputVariable, topic: topic, group: group)
                .merging(extraEnvironment) { _, new in new }.merging(log == nil ? [:] : ["LOG_LEVEL": "debug"]) { _, new in new },
            log: log)
        defer { worker.stop() }
        let client = database.client(logger: logger)
        defer { client.close() }
        // Progress from the offsets the worker records: a tiny table, so polling it costs the run nothing.
        let rate = try await worker.drainRate(total: messages.count) {
            try await Self.storedOffsets(client, table: "rapport_consumer_offsets", group: group, topic: topic)
        } settled: {
            try await settled(client)
        }
        let peak = worker.peakResidentMegabytes
        worker.stop()
        client.close()
        try await inspect(database)
        try await database.drop()
        return (rate, peak)
    }

    /// Publishes a backlog, 10,000 messages a send, each delivery confirmed.
    func publish(_ messages: [KafkaOutboundMessage]) async throws {
        for start in stride(from: 0, to: messages.count, by: 10_000) {
            for result in try await producer.send(Array(messages[start..<min(start + 10_000, messages.count)])) { _ = try result.get() }
        }
    }

    /// The next offsets a worker stored with its state in `table` (Rapport's `rapport_consumer_offsets`, the peer's
    /// `consumer_offsets`) for `group` and `topic`, summed over partitions: the events it has applied. 0 until the
    /// worker has created the table.
    static func storedOffsets(_ client: PostgresClient, table: String, group: String, topic: String) async throws -> Int {
        try await client.withConnection { connection in
            guard try connection.query("SELECT to_regclass($1) IS NOT NULL", [table]).first?.decode(Bool.self) ?? false else { return 0 }
            return try connection.query(
                "SELECT coalesce(sum(next_offset), 0)::bigint FROM \(identifier: table) WHERE group_id = \(group) AND topic = \(topic)"
            ).first?.decode(Int.self) ?? 0
        }
    }

    /// The pipeline's own figure: EchoWorker (two rows and one command per event) drains `count` events.
    func pipelineRate(events count: Int) async throws -> (rate: Double, peak: Double) {
        try await drain("EchoWorker", inputVariable: "SHOPPER_EVENTS_TOPIC") { topic in
            (0..<count).map { index in
                let shopper = "shopper-\(index % 1000)"
                let json =
                    #"{"type":"track","event":"Product Viewed","messageId":"ev-\#(index)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"\#(shopper)","context":{"storeId":"bench"},"properties":{"sequence":\#(index),"product_id":"p-\#(index % 500)"}}"#
                return KafkaOutboundMessage(topic: topic, key: Array("bench/\(shopper)".utf8), value: Array(json.utf8))
            }
        }
    }

    func close() async throws {
        try await producer.close()
        withExtendedLifetime(cluster) {}
    }
}
