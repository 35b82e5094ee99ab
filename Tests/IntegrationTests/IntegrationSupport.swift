import Foundation
import Logging
import Shared
import Testing

/// Where the integration tests find PostgreSQL, Kafka and the built executables. `scripts/test` sets all of them;
/// run by hand, they default to local services and the debug build.
enum TestEnvironment {
    static let variables = ProcessInfo.processInfo.environment

    /// The repository's root.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `DATABASE_URL`, default `postgresql://rapport@127.0.0.1:5432/rapport`.
    static let databaseURL = variables["DATABASE_URL"] ?? "postgresql://rapport@127.0.0.1:5432/rapport"

    /// `KAFKA_BROKERS`, default `localhost:9092`.
    static let kafkaBrokers = variables["KAFKA_BROKERS"] ?? "localhost:9092"

    /// The folder holding the built executables: `RAPPORT_BIN_DIR`, default `.build/debug`.
    static let binDirectory = URL(fileURLWithPath: variables["RAPPORT_BIN_DIR"] ?? root.appendingPathComponent(".build/debug").path)

    /// The data folder of a PostgreSQL that `scripts/pg-start` started and the tests may stop and start
    /// (`RAPPORT_PG_DIR`); unset when the tests were pointed at a server they do not own.
    static let postgresDirectory = variables["RAPPORT_PG_DIR"]

    /// The embedded Kafka's control folder (`RAPPORT_KAFKA_CONTROL_DIR`), where a test drops command files to change
    /// the cluster under running workers; unset when the tests use a Kafka they do not own.
    static let kafkaControlDirectory = variables["RAPPORT_KAFKA_CONTROL_DIR"].map { URL(fileURLWithPath: $0) }

    /// Where child processes keep their captured output: `RAPPORT_RUN_DIR` (a folder `scripts/test` removes when it
    /// ends), default the temporary directory.
    static let runDirectory = variables["RAPPORT_RUN_DIR"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory

    /// Quiet: librdkafka reports every torn-down test cluster as brokers going down.
    static let logger: Logger = {
        var logger = Logger(label: "integration-tests")
        logger.logLevel = .critical
        return logger
    }()

    /// A name no earlier run used.
    static func unique(_ prefix: String) -> String {
        "\(prefix)-\(UInt32.random(in: .min ... .max))-\(Int(Date().timeIntervalSince1970))"
    }

    /// `DATABASE_URL` with its database replaced by `database`.
    static func databaseURL(database: String) -> String {
        PostgresConfiguration(url: databaseURL).replacingDatabase(with: database).url
    }

    /// A client on `DATABASE_URL`.
    static func postgres(url: String = databaseURL, poolSize: Int = 4) -> PostgresClient {
        var configuration = PostgresConfiguration(url: url)
        configuration.poolSize = poolSize
        configuration.applicationName = "rapport-tests"
        return PostgresClient(configuration: configuration, logger: logger)
    }

    /// Creates an empty database, runs `body` with its URL, and drops it.
    static func withFreshDatabase<T>(_ body: (String) async throws -> T) async throws -> T {
        let name = unique("rapport_it").replacingOccurrences(of: "-", with: "_")
        let admin = postgres(poolSize: 1)
        defer { admin.close() }
        _ = try await admin.withConnection { try $0.execute("CREATE DATABASE \(identifier: name)") }
        // A test may restart the server: the admin connection is then gone, and the pool opens a new one on retry.
        func drop() async throws {
            for attempt in 1...3 {
                do {
                    _ = try await admin.withConnection { try $0.execute("DROP DATABASE IF EXISTS \(identifier: name) WITH (FORCE)") }
                    return
                } catch let error as PostgresError where error.isRetriable && attempt < 3 {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        }
        do {
            let result = try await body(databaseURL(database: name))
            try await drop()
            return result
        } catch {
            try? await drop()
            throw error
        }
    }

    /// The Kafka client settings pointing at `KAFKA_BROKERS`.
    static func kafka(clientID: String = "rapport-tests") -> KafkaConfiguration {
        var configuration = KafkaConfiguration()
        configuration.bootstrapServers = kafkaBrokers.split(separator: ",").map(String.init)
        configuration.clientID = clientID
        return configuration
    }
}

/// An executable of the package running as its own OS process, its output captured in files.
final class ChildProcess: @unchecked Sendable {
    // `@unchecked Sendable`: `Process` is used from one test at a time; its state is read through its own API.
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL

    /// Starts `executable` (a product of this package) with `arguments` and `environment` added to the tests' own.
    convenience init(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:], unset: Set<String> = []) throws {
        try self.init(at: TestEnvironment.binDirectory.appendingPathComponent(executable), arguments, environment: environment, unset: unset)
    }

    /// Starts the program at `url` with `arguments` and `environment` added to the tests' own, less the variables
    /// named in `unset`.
    init(at url: URL, _ arguments: [String] = [], environment: [String: String] = [:], unset: Set<String> = [], input: URL? = nil) throws {
        let folder = TestEnvironment.runDirectory.appendingPathComponent(TestEnvironment.unique("proc"))
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        stdoutURL = folder.appendingPathComponent("stdout")
        stderrURL = folder.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = url
        process.arguments = arguments
        var variables = TestEnvironment.variables
        variables["KAFKA_BROKERS"] = TestEnvironment.kafkaBrokers
        variables["DATABASE_URL"] = TestEnvironment.databaseURL
        variables.merge(environment) { _, new in new }
        for name in unset { variables[name] = nil }
        process.environment = variables
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = try input.map { try FileHandle(forReadingFrom: $0) } ?? FileHandle.nullDevice
        try process.run()
    }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    /// The port a worker's probe server bound (it logs `"http.port":"N"` when listening; tests start workers with
    /// `HTTP_PORT=0` so that no two processes ever race for a port).
    func probePort(timeout: Duration = .seconds(60)) async throws -> Int {
        var port: Int?
        try await eventually("the probe server listening", timeout: timeout) {
            guard process.isRunning || port != nil else { throw TestFailure("the worker exited: \(stderr.suffix(2000))") }
            guard let line = stdout.split(separator: "\n").first(where: { $0.contains("\"probe server listening\"") }),
                let range = line.range(of: "\"http.port\":\"")
            else { return false }
            port = Int(line[range.upperBound...].prefix { $0.isNumber })
            return port != nil
        }
        return port ?? 0
    }

    /// Sends `signal` to the process.
    func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit and returns its status (the signal number, negated, when a signal ended it).
    /// - Throws: when it is still running after `timeout`; it is killed then.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                send(SIGKILL)
                throw TestFailure("\(process.executableURL?.lastPathComponent ?? "process") still running after \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationReason == .uncaughtSignal ? -process.terminationStatus : process.terminationStatus
    }

    deinit {
        if process.isRunning { send(SIGKILL) }
    }
}

/// A failed precondition of a test, with what was expected.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or `timeout` passes.
/// - Throws: ``TestFailure`` naming `what` on timeout.
func eventually(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("timed out after \(timeout) waiting for: \(what)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// One message as `rapport-tool consume` prints it.
struct ConsumedMessage: Decodable, Hashable {
    let partition: Int32
    let offset: Int64
    let key: String?
    let value: String
    let headers: [String: String]
}

/// Parses `rapport-tool consume` output: messages, and the highest committed offset per partition.
/// A line cut short by a kill is ignored.
func parseConsumerOutput(_ text: String) -> (messages: [ConsumedMessage], committed: [Int32: Int64]) {
    struct Committed: Decodable { let committed: [String: Int64] }
    let decoder = JSONDecoder()
    var messages: [ConsumedMessage] = []
    var committed: [Int32: Int64] = [:]
    for line in text.split(separator: "\n") {
        let data = Data(line.utf8)
        if let message = try? decoder.decode(ConsumedMessage.self, from: data) {
            messages.append(message)
        } else if let commit = try? decoder.decode(Committed.self, from: data) {
            for (partition, offset) in commit.committed {
                guard let number = Int32(partition) else { continue }
                committed[number] = max(committed[number] ?? 0, offset)
            }
        }
    }
    return (messages, committed)
}

/// The `seq` of a message value `rapport-tool produce --count` generated.
func sequenceNumber(_ value: String) -> Int? {
    struct Generated: Decodable { let seq: Int }
    return try? JSONDecoder().decode(Generated.self, from: Data(value.utf8)).seq
}

/// Runs one of the repository's scripts. Not through `Process`: `pg-start` leaves a daemon behind, and
/// Foundation on Linux then never reports the script's exit.
func runScript(_ name: String, _ argument: String) async throws {
    let path = TestEnvironment.root.appendingPathComponent("scripts/\(name)").path
    var pid: pid_t = 0
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let arguments: [UnsafeMutablePointer<CChar>?] = [strdup(path), strdup(argument), nil]
    defer { for pointer in arguments { free(pointer) } }
    let spawned = posix_spawn(&pid, path, &actions, nil, arguments, environ)
    guard spawned == 0 else { throw TestFailure("cannot run scripts/\(name): errno \(spawned)") }
    var status: Int32 = 0
    let deadline = ContinuousClock.now + .seconds(60)
    while waitpid(pid, &status, WNOHANG) == 0 {
        guard ContinuousClock.now < deadline else { throw TestFailure("scripts/\(name) still running after 60 s") }
        try await Task.sleep(for: .milliseconds(20))
    }
    guard status == 0 else { throw TestFailure("scripts/\(name) failed with status \(status)") }
}
