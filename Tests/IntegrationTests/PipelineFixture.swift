import Foundation
import Shared
import Testing

/// One worker test's world: its own topics (`<prefix>-N`, `-dlq`, `-commands`, `-recs`, created by `scripts/test`), a
/// fresh database, a store id no other run used, and worker processes (EchoWorker unless told) reading them.
final class PipelineFixture: @unchecked Sendable {
    // `@unchecked Sendable`: used by one test at a time.
    let number: Int
    let databaseURL: String
    /// The executable the fixture starts.
    let executable: String
    /// Topic names start with it: `it-pipe` for pipeline tests, `it-cap` for CaptureWorker's.
    let prefix: String
    let store = TestEnvironment.unique("store")
    let group = TestEnvironment.unique("group")
    let producer: KafkaProducer
    var workers: [ChildProcess] = []
    var extraEnvironment: [String: String] = [:]

    var inputTopic: String { "\(prefix)-\(number)" }
    var deadLetterTopic: String { "\(prefix)-\(number)-dlq" }
    var commandsTopic: String { "\(prefix)-\(number)-commands" }
    var recommendationsTopic: String { "\(prefix)-\(number)-recs" }

    init(number: Int, databaseURL: String, executable: String = "EchoWorker", prefix: String = "it-pipe") throws {
        self.number = number
        self.databaseURL = databaseURL
        self.executable = executable
        self.prefix = prefix
        producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: TestEnvironment.kafka()), logger: TestEnvironment.logger)
    }

    /// Starts a worker; its probe port is whatever free port it bound (read from its log).
    @discardableResult
    func startWorker() async throws -> (process: ChildProcess, port: Int) {
        var environment = [
            "DATABASE_URL": databaseURL, "SHOPPER_EVENTS_TOPIC": inputTopic, "EMAIL_COMMANDS_TOPIC": commandsTopic,
            "RECOMMENDATION_COMMANDS_TOPIC": recommendationsTopic,
            "KAFKA_GROUP_ID": group, "HTTP_PORT": "0", "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "LOG_FORMAT": "json", "BATCH_WAIT_MS": "50",
        ]
        environment.merge(extraEnvironment) { _, new in new }
        let worker = try ChildProcess(executable, [], environment: environment)
        workers.append(worker)
        return (worker, try await worker.probePort())
    }

    /// A track event of this run's store, keyed by its shopper.
    func event(shopper: Int, sequence: Int, id: String? = nil, extra: String = "") -> KafkaOutboundMessage {
        let shopperID = "shopper-\(shopper)"
        let messageID = id ?? "\(shopperID)-\(sequence)"
        let json =
            #"{"type":"track","event":"Product Viewed","messageId":"\#(messageID)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"\#(shopperID)","context":{"storeId":"\#(store)"},"properties":{"sequence":\#(sequence)\#(extra)}}"#
        return KafkaOutboundMessage(topic: inputTopic, key: Array("\(store)/\(shopperID)".utf8), value: Array(json.utf8))
    }

    /// Publishes and checks every delivery; returns the reports in order.
    @discardableResult
    func publish(_ messages: [KafkaOutboundMessage]) async throws -> [KafkaDeliveryReport] {
        try await producer.send(messages).map { try $0.get() }
    }

    /// Effects this run's store has in the database.
    func effectCount() async throws -> Int {
        let client = TestEnvironment.postgres(url: databaseURL, poolSize: 1)
        defer { client.close() }
        let store = self.store
        return try await client.withConnection { connection in
            // The table appears with the worker's first migration.
            guard try connection.query("SELECT to_regclass('echo_effects') IS NOT NULL AS ready").first?.decode(Bool.self, at: 0) == true else { return 0 }
            return try connection.query("SELECT count(*) FROM echo_effects WHERE store_id = $1", [store]).first?.decode(Int.self, at: 0) ?? 0
        }
    }

    /// Runs a query on the test database.
    func query(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) async throws -> PostgresRows {
        let client = TestEnvironment.postgres(url: databaseURL, poolSize: 1)
        defer { client.close() }
        return try await client.withConnection { try $0.query(sql, parameters) }
    }

    /// Reads `topic` from the beginning until `enough` holds for what was read (this store's messages only), or
    /// `timeout` passes.
    func read(_ topic: String, partitions: Int32, timeout: Duration = .seconds(60), until enough: ([KafkaMessage]) -> Bool) async throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(kafka: TestEnvironment.kafka(), groupID: TestEnvironment.unique("reader")), logger: TestEnvironment.logger)
        try consumer.assign(Dictionary(uniqueKeysWithValues: (0..<partitions).map { (TopicPartition(topic: topic, partition: $0), Int64?.some(-2)) }))
        var mine: [KafkaMessage] = []
        let deadline = ContinuousClock.now + timeout
        let marker = Array(store.utf8)
        while !enough(mine), ContinuousClock.now < deadline {
            for message in try await consumer.poll(maxMessages: 5000, maxWait: .milliseconds(200)) {
                if let key = message.key, key.starts(with: marker) { mine.append(message) }
            }
        }
        try await consumer.close()
        return mine
    }

    /// Stops every worker still running (SIGTERM, then SIGKILL).
    func stopWorkers() async {
        for worker in workers where worker.isRunning { worker.send(SIGTERM) }
        for worker in workers { _ = try? await worker.waitForExit(timeout: .seconds(30)) }
    }
}

extension TestEnvironment {
    /// A pipeline fixture on a fresh database, stopped and dropped afterwards.
    static func withPipeline<T>(
        _ number: Int, executable: String = "EchoWorker", prefix: String = "it-pipe", _ body: (PipelineFixture) async throws -> T
    ) async throws -> T {
        try await withFreshDatabase { url in
            let fixture = try PipelineFixture(number: number, databaseURL: url, executable: executable, prefix: prefix)
            do {
                let result = try await body(fixture)
                await fixture.stopWorkers()
                return result
            } catch {
                for worker in fixture.workers { print("--- worker log tail:\n\(worker.stdout.suffix(3000))\n\(worker.stderr.suffix(2000))") }
                await fixture.stopWorkers()
                throw error
            }
        }
    }
}
