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
    /// Variables the workers start without (to give them as `X_FILE` instead).
    var unsetEnvironment: Set<String> = []

    var inputTopic: String { "\(prefix)-\(number)" }
    /// The variable naming the executable's input topic.
    var inputVariable: String {
        switch executable {
        case "ReceiptWorker": "CHECKOUT_EVENTS_TOPIC"
        case "SurveyWorker": "SURVEY_EVENTS_TOPIC"
        default: "SHOPPER_EVENTS_TOPIC"
        }
    }
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
            "DATABASE_URL": databaseURL, inputVariable: inputTopic, "EMAIL_COMMANDS_TOPIC": commandsTopic,
            "RECOMMENDATION_COMMANDS_TOPIC": recommendationsTopic,
            "KAFKA_GROUP_ID": group, "HTTP_PORT": "0", "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "LOG_FORMAT": "json", "BATCH_WAIT_MS": "50",
            // ReceiptWorker: fold the model's changes often, top sellers recomputed at every fold.
            "MODEL_FOLD_INTERVAL_MS": "100", "TOP_SELLERS_REFRESH_SECONDS": "0",
        ]
        environment.merge(extraEnvironment) { _, new in new }
        for name in unsetEnvironment { environment[name] = nil }
        let worker = try ChildProcess(executable, [], environment: environment, unset: unsetEnvironment)
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
        published += messages
        return try await producer.send(messages).map { try $0.get() }
    }

    /// Waits until no other client session is connected to the fixture's database (autovacuum's do not count): a
    /// backend reports its statistics (`pg_stat_user_tables`) as it exits, so a plan test reads them only once every
    /// worker's backend has gone.
    func waitForOtherSessionsToEnd(timeout: Duration = .seconds(30)) async throws {
        let others = """
            SELECT count(*), coalesce(string_agg(application_name || ' (' || state || ')', ', '), '') FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
            """
        do {
            try await eventually("every other client session of the database ended", timeout: timeout) {
                try await query(others).first?.decode(Int.self, at: 0) == 0
            }
        } catch {
            throw TestFailure("\(error): still connected: \(try await query(others).first?.decode(String.self, at: 1) ?? "?")")
        }
    }

    /// The personal data this test published (emails, names, phone numbers, IP addresses, user agents) that any
    /// worker's log holds: must be none.
    func personalDataInLogs() -> [String] {
        var personal = Set<String>()
        func collect(_ value: JSONValue, key: String?) {
            switch value {
            case .object(let object): for (name, child) in object { collect(child, key: name) }
            case .array(let array): for child in array { collect(child, key: key) }
            case .string(let text):
                let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
                let personalKey = ["email", "firstName", "lastName", "phone", "ip", "userAgent"].contains(key ?? "")
                if trimmed.count >= 3, personalKey || trimmed.contains("@") { personal.insert(trimmed) }
            default: break
            }
        }
        for message in published { if let value = try? JSONValue.parse(message.value[...]) { collect(value, key: nil) } }
        let logs = workers.map { ($0.stdout + $0.stderr).lowercased() }
        return personal.filter { value in logs.contains { $0.contains(value) } }.sorted()
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

    /// Every message published through ``publish(_:)``, for the log scan at the end of the test.
    private(set) var published: [KafkaOutboundMessage] = []

    /// How many partitions each of the fixture's topics has: `scripts/test` gives dead-letter topics 1, the others 4.
    func partitions(of topic: String) -> Int32 { topic == deadLetterTopic ? 1 : 4 }

    /// Waits until the worker has finished with everything published to the input topic so far: PostgreSQL's offsets
    /// for the group reach each partition's high watermark (taken now) and the outbox holds nothing waiting — every
    /// command and dead letter of that input is on the wire. What is read afterwards up to the output topics' high
    /// watermarks is then all there is: extra or duplicate messages are seen, and nothing arrives later.
    /// - Returns: The input's high watermarks.
    @discardableResult
    func waitUntilConsumed(timeout: Duration = .seconds(120)) async throws -> [TopicPartition: Int64] {
        let watermarks = try await highWatermarks(inputTopic)
        var state = ""
        do {
            try await eventually("the input consumed to its high watermarks and the outbox drained", timeout: timeout) {
                let rows = try await query(
                    "SELECT partition, next_offset FROM rapport_consumer_offsets WHERE group_id = $1 AND topic = $2", [group, inputTopic])
                var recorded: [Int32: Int64] = [:]
                for row in rows { recorded[try row.decode(Int32.self, at: 0) ?? -1] = try row.decode(Int64.self, at: 1) ?? 0 }
                let waiting =
                    try await query("SELECT count(*) FROM rapport_outbox WHERE group_id = $1 AND parked_at IS NULL", [group])
                    .first?.decode(Int.self, at: 0) ?? -1
                state =
                    "high watermarks \(watermarks.sorted { $0.key < $1.key }.map(\.value)), recorded \(recorded.sorted { $0.key < $1.key }.map(\.value)), outbox \(waiting)"
                return waiting == 0 && watermarks.allSatisfy { $0.value == 0 || (recorded[$0.key.partition] ?? 0) >= $0.value }
            }
        } catch let failure as TestFailure {
            throw TestFailure("\(failure.description); \(state)")
        }
        return watermarks
    }

    /// The high watermark of each of `topic`'s partitions.
    func highWatermarks(_ topic: String) async throws -> [TopicPartition: Int64] {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(kafka: TestEnvironment.kafka(), groupID: TestEnvironment.unique("watermarks")),
            logger: TestEnvironment.logger)
        let watermarks = try await consumer.highWatermarks(for: (0..<partitions(of: topic)).map { TopicPartition(topic: topic, partition: $0) })
        try await consumer.close()
        return watermarks
    }

    /// Every message of this run's store on `topic`, read from the beginning up to the high watermarks as of this
    /// call (call it after ``waitUntilConsumed(timeout:)``).
    func readToEnd(_ topic: String, timeout: Duration = .seconds(60)) async throws -> [KafkaMessage] {
        let watermarks = try await highWatermarks(topic)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(kafka: TestEnvironment.kafka(), groupID: TestEnvironment.unique("reader")), logger: TestEnvironment.logger
        )
        try consumer.assign(Dictionary(uniqueKeysWithValues: watermarks.keys.map { ($0, Int64?.some(-2)) }))
        var next: [TopicPartition: Int64] = [:]
        var mine: [KafkaMessage] = []
        let deadline = ContinuousClock.now + timeout
        let marker = Array(store.utf8)
        while watermarks.contains(where: { (next[$0.key] ?? 0) < $0.value }) {
            guard ContinuousClock.now < deadline else {
                try await consumer.close()
                throw TestFailure("\(topic) not read to its high watermarks \(watermarks) within \(timeout): at \(next)")
            }
            for message in try await consumer.poll(maxMessages: 5000, maxWait: .milliseconds(200)) {
                next[message.topicPartition] = message.offset + 1
                if message.offset < watermarks[message.topicPartition] ?? 0, let key = message.key, key.starts(with: marker) { mine.append(message) }
            }
        }
        try await consumer.close()
        try await conformToAsyncAPI(mine, of: topic)
        return mine
    }

    /// Checks that what a worker emitted — its commands and its dead letters — validates against the AsyncAPI
    /// document's schemas (docs/asyncapi.yaml, by `scripts/asyncapi-check`). EchoWorker's commands are not the
    /// contract's; its dead letters are.
    func conformToAsyncAPI(_ messages: [KafkaMessage], of topic: String) async throws {
        let channel: String
        switch topic {
        case commandsTopic where executable != "EchoWorker": channel = "email-commands"
        case recommendationsTopic: channel = "recommendation-commands"
        case deadLetterTopic: channel = "shopper-events-dlq"
        default: return
        }
        guard !messages.isEmpty else { return }
        let lines = messages.map { message in
            let headers = Dictionary(message.headers.map { ($0.key, $0.value.map { String(decoding: $0, as: UTF8.self) } ?? "") }) { first, _ in first }
            let record: [String: JSONValue] = [
                "value": .string(String(decoding: message.value, as: UTF8.self)), "headers": .object(headers.mapValues(JSONValue.string)),
            ]
            return String(decoding: JSONValue.object(record).encoded(), as: UTF8.self)
        }
        let input = TestEnvironment.runDirectory.appendingPathComponent(TestEnvironment.unique("asyncapi") + ".jsonl")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        let check = try ChildProcess(
            at: URL(fileURLWithPath: "/bin/bash"), [TestEnvironment.root.appendingPathComponent("scripts/asyncapi-check").path, "--channel", channel],
            input: input)
        let status = try await check.waitForExit(timeout: .seconds(120))
        #expect(status == 0, "\(messages.count) messages of \(topic) against docs/asyncapi.yaml: \(check.stderr.prefix(3000))")
    }

    /// For comparing two runs of one stream: `text` with this run's store id replaced by `STORE`.
    func normalised(_ text: String) -> String { text.replacingOccurrences(of: store, with: "STORE") }

    /// Every email and recommendation command of this run's store, as sorted JSON text with what differs between two
    /// runs of one stream taken out: the store id, command ids (they name the store) and the random tokens.
    func comparableCommands() async throws -> [String] {
        var commands: [String] = []
        for topic in [commandsTopic, recommendationsTopic] {
            for message in try await readToEnd(topic) {
                guard var command = try JSONValue.parse(message.value).objectValue else { continue }
                command["command_id"] = nil
                if command["unsubscribe_token"] != nil { command["unsubscribe_token"] = .string("TOKEN") }
                if var data = command["data"]?.objectValue, data["confirmation_token"] != nil {
                    data["confirmation_token"] = .string("TOKEN")
                    command["data"] = .object(data)
                }
                commands.append(normalised(String(decoding: JSONValue.object(command).encoded(), as: UTF8.self)))
            }
        }
        return commands.sorted()
    }

    /// The rows `sql` returns for this run's store (`$1`), each one text column, normalised and sorted.
    func comparableRows(_ sql: String) async throws -> [String] {
        try await query(sql, [store]).map { row in normalised(try row.decode(String.self, at: 0) ?? "") }.sorted()
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
                let leaked = fixture.personalDataInLogs()
                #expect(leaked.isEmpty, "personal data in the workers' logs: \(leaked)")
                return result
            } catch {
                for worker in fixture.workers { print("--- worker log tail:\n\(worker.stdout.suffix(3000))\n\(worker.stderr.suffix(2000))") }
                await fixture.stopWorkers()
                throw error
            }
        }
    }
}
