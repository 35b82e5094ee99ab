import Foundation
import Shared
import Testing

/// The worker executables as operators run them: migrations, configuration errors, probes, SIGTERM.
@Suite(.serialized) struct WorkerProcessTests {
    @Test func twoProcessesMigratingAtOnceApplyEachMigrationExactlyOnce() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let environment = ["DATABASE_URL": url, "LOG_FORMAT": "json"]
            let first = try ChildProcess("CaptureWorker", ["migrate"], environment: environment)
            let second = try ChildProcess("CaptureWorker", ["migrate"], environment: environment)
            let third = try ChildProcess("ReceiptWorker", ["migrate"], environment: environment)
            #expect(try await first.waitForExit() == 0, "\(first.stderr)")
            #expect(try await second.waitForExit() == 0, "\(second.stderr)")
            #expect(try await third.waitForExit() == 0, "\(third.stderr)")
            // Whichever process held the lock applied what was missing; the others found it done. Across the three,
            // each migration was applied exactly once.
            let applied = [first, second, third].map { $0.stdout.components(separatedBy: "\"migration applied\"").count - 1 }

            let client = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { client.close() }
            let rows = try await client.withConnection {
                try $0.query("SELECT component, version FROM rapport_schema_migrations ORDER BY component, version")
                    .map { "\(try $0.decode(String.self, at: 0) ?? "")/\(try $0.decode(Int.self, at: 1) ?? 0)" }
            }
            // Every migration file of the three components, as the files in the source tree name them.
            let expected = try ["shared": "Shared", "capture": "CaptureWorker", "receipt": "ReceiptWorker"].flatMap { component, target in
                try Migration.load(component: component, directory: TestEnvironment.root.appendingPathComponent("Sources/\(target)/Migrations"))
                    .map { "\(component)/\($0.version)" }
            }.sorted()
            #expect(expected.count >= 6)
            #expect(rows.sorted() == expected, "the same migrations (compared as sorted text: shared/10 after shared/1)")
            #expect(applied.reduce(0, +) == rows.count, "\(applied)")
            #expect(applied[0] == 0 || applied[1] == 0, "the two CaptureWorkers did not both apply the capture migrations")
            let tables = try await client.withConnection {
                try $0.query("SELECT count(*) FROM pg_tables WHERE tablename IN ('capture_shoppers', 'rapport_identities', 'receipt_orders')")
                    .first?.decode(Int.self, at: 0)
            }
            #expect(tables == 3)
        }
    }

    @Test func anEditedMigrationIsRefusedAndAFailingOneLeavesNothingBehind() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let client = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { client.close() }
            let migrator = Migrator(client: client, logger: TestEnvironment.logger)
            let first = Migration(component: "t", version: 1, name: "one", sql: "CREATE TABLE t_one (id int)")
            #expect(try await migrator.migrate([first]).count == 1)
            #expect(try await migrator.migrate([first]).isEmpty)

            var edited = first
            edited.sql = "CREATE TABLE t_one (id bigint)"
            await #expect(throws: MigrationError.self) { try await migrator.migrate([edited]) }

            let good = Migration(component: "t", version: 2, name: "two", sql: "CREATE TABLE t_two (id int)")
            let bad = Migration(component: "t", version: 3, name: "three", sql: "CREATE TABLE t_three (id no_such_type)")
            let error = await #expect(throws: PostgresError.self) { try await migrator.migrate([first, good, bad]) }
            #expect(error?.sqlState == "42704")
            let leftovers = try await client.withConnection {
                try $0.query("SELECT count(*) FROM pg_tables WHERE tablename = 't_two'").first?.decode(Int.self, at: 0)
            }
            #expect(leftovers == 0, "version 2 was rolled back with version 3")
        }
    }

    @Test(arguments: [
        (["KAFKA_BROKERS": ""], "KAFKA_BROKERS"),
        (["KAFKA_BROKERS": "no-port-here"], "KAFKA_BROKERS"),
        (["DATABASE_URL": "postgresql://rapport:hunter2@db:notaport/rapport"], "DATABASE_URL"),
        (["DATABASE_URL": "postgresql://rapport:hunter2@db/rapport?sslmode=sometimes"], "DATABASE_URL"),
        (["KAFKA_SASL_PASSWORD": "hunter2", "KAFKA_NO_SUCH_PROPERTY": "1"], "KAFKA_NO_SUCH_PROPERTY"),
        (["KAFKA_SESSION_TIMEOUT_MS": "soon"], "KAFKA_SESSION_TIMEOUT_MS"),
        (["HTTP_PORT": "http"], "HTTP_PORT"),
        (["LOG_LEVEL": "loud"], "LOG_LEVEL"),
    ])
    func aBadSettingStopsTheWorkerWithOneLineNamingIt(environment: [String: String], variable: String) async throws {
        for worker in ["CaptureWorker", "SurveyWorker"] {
            let process = try ChildProcess(worker, [], environment: environment)
            let status = try await process.waitForExit(timeout: .seconds(20))
            #expect(status == 1)
            let lines = process.stderr.split(separator: "\n")
            #expect(lines.count == 1, "expected one line, got: \(process.stderr)")
            #expect(lines.first?.contains(variable) == true, "\(process.stderr)")
            #expect(!process.stderr.contains("hunter2"), "a secret was printed")
            #expect(!process.stderr.contains("Backtrac") && !process.stderr.contains("Fatal error"))
            #expect(process.stdout.isEmpty)
        }
    }

    /// CaptureWorker's own settings: the store settings file and the erasure salt.
    @Test(arguments: [
        (#"{"defaults": {"double_opt_in": "yes"}}"#, [:], "STORE_SETTINGS_FILE: defaults.double_opt_in must be true or false"),
        (#"{"stores": {"acme": {"quiet_hours": {"start": "9pm", "end": "08:00"}}}}"#, [:], "STORE_SETTINGS_FILE: stores.acme.quiet_hours.start"),
        (#"{"defaults": {"keep_erasure_hash": true}}"#, [:], "ERASURE_HASH_SALT: must be set"),
        (#"{"defaults": {"keep_erasure_hash": true}}"#, ["ERASURE_HASH_SALT": "short"], "ERASURE_HASH_SALT: must be set (16 characters or more)"),
    ])
    func badStoreSettingsStopCaptureWorkerNamingTheSetting(settings: String, environment: [String: String], message: String) async throws {
        let file = TestEnvironment.runDirectory.appendingPathComponent(TestEnvironment.unique("settings") + ".json")
        try Data(settings.utf8).write(to: file)
        let process = try ChildProcess("CaptureWorker", [], environment: environment.merging(["STORE_SETTINGS_FILE": file.path]) { _, new in new })
        #expect(try await process.waitForExit(timeout: .seconds(20)) == 1)
        let lines = process.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.contains(message) == true, "\(process.stderr)")
        #expect(!process.stderr.contains("short"), "the salt was printed")
    }

    @Test func sigtermWhileWaitingForPostgreSQLAtStartUpExitsZero() async throws {
        // Nothing listens on this port: the worker waits for PostgreSQL, retrying.
        let worker = try ChildProcess(
            "CaptureWorker", [], environment: ["DATABASE_URL": "postgresql://rapport@127.0.0.1:9/rapport", "HTTP_PORT": "0"])
        try await eventually("the worker waiting for PostgreSQL", timeout: .seconds(20)) {
            worker.stdout.contains("schema migration waiting for PostgreSQL")
        }
        let sent = ContinuousClock.now
        worker.send(SIGTERM)
        #expect(try await worker.waitForExit(timeout: .seconds(10)) == 0)
        #expect(ContinuousClock.now - sent < .seconds(5))
        #expect(worker.stdout.contains("stopped during start-up"))
    }

    @Test func aWorkerJoinsItsGroupAnswersProbesAndDrainsOnSIGTERM() async throws {
        let worker = try ChildProcess(
            "SurveyWorker", [],
            environment: ["HTTP_PORT": "0", "KAFKA_GROUP_ID": TestEnvironment.unique("survey"), "KAFKA_SESSION_TIMEOUT_MS": "6000"])
        defer { worker.send(SIGKILL) }
        let port = try await worker.probePort()
        try await eventually("/healthz answers 200", timeout: .seconds(30)) { await probe(port, "/healthz")?.status == 200 }
        try await eventually("/readyz answers 200 once the group assigned partitions", timeout: .seconds(30)) {
            await probe(port, "/readyz")?.status == 200
        }
        let ready = try #require(await probe(port, "/readyz"))
        #expect(ready.body.contains("\"postgres\":true") && ready.body.contains("\"kafka_assignment\":true"))
        let metrics = try #require(await probe(port, "/metrics"))
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("rapport_outbox_backlog"))
        #expect(await probe(port, "/nope")?.status == 404)

        worker.send(SIGTERM)
        let started = ContinuousClock.now
        #expect(try await worker.waitForExit(timeout: .seconds(25)) == 0)
        #expect(ContinuousClock.now - started < .seconds(20), "drained within the default drain timeout")
        let logLines = worker.stdout.split(separator: "\n")
        #expect(logLines.allSatisfy { $0.hasPrefix("{\"ts\":") }, "JSON log lines only")
        #expect(worker.stdout.contains("\"msg\":\"leaving the consumer group\""))
        #expect(worker.stdout.contains("\"msg\":\"stopped\""))
    }
}

/// `GET path` on the local probe port: status and body, or `nil` when nothing answers.
func probe(_ port: Int, _ path: String) async -> (status: Int, body: String)? {
    let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { return nil }
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return nil }
    let request = "GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    guard request.withCString({ send(socket, $0, strlen($0), 0) }) > 0 else { return nil }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = recv(socket, &buffer, buffer.count, 0)
        if count <= 0 { break }
        response.append(contentsOf: buffer[0..<count])
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let statusLine = text.split(separator: "\r\n").first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
        return nil
    }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (status, body)
}

/// The value of one `/metrics` series (`name{labels}` exactly as exposed): 0 when absent, -1 when nothing answers.
func metric(_ port: Int, _ series: String) async -> Double {
    guard let body = await probe(port, "/metrics")?.body else { return -1 }
    return body.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
}
