import Foundation
import Shared
import Testing

/// The libpq layer against a real PostgreSQL.
@Suite(.serialized) struct PostgresTests {
    let client = TestEnvironment.postgres()
    let table = TestEnvironment.unique("pg_test").replacingOccurrences(of: "-", with: "_")

    init() async throws {
        let table = self.table
        _ = try await client.withConnection {
            try $0.execute(
                "CREATE TABLE \(identifier: table) (id bigint PRIMARY KEY, name text, amount double precision, at timestamptz, raw bytea, ok boolean)")
        }
    }

    private func dropTable() async throws {
        let table = self.table
        _ = try await client.withConnection { try $0.execute("DROP TABLE \(identifier: table)") }
        client.close()
    }

    @Test func hostileStringsTravelAsParametersNeverAsSQL() async throws {
        let table = self.table
        let hostile = ["O'Brien", "'; DROP TABLE \(table); --", "\\x00 \\\\ backslashes", "Robert\"); --", "🎉 émoji ✓", "$1 $2", "tab\tnew\nline"]
        let names = try await client.withConnection { connection in
            for (index, name) in hostile.enumerated() {
                try connection.execute("INSERT INTO \(table) (id, name) VALUES ($1, $2)", [index, name])
            }
            return try connection.query("SELECT name FROM \(identifier: table) ORDER BY id").map { try $0.decode(String.self, "name") }
        }
        #expect(names == hostile.map(Optional.some))
        try await dropTable()
    }

    @Test func aNULCharacterIsRefusedCleanlyAndTheConnectionStaysUsable() async throws {
        let table = self.table
        let error = await #expect(throws: PostgresError.self) {
            try await client.withConnection { try $0.execute("INSERT INTO \(table) (id, name) VALUES (1, $1)", ["nul\u{0}inside"]) }
        }
        #expect(error?.code == .invalidParameter)
        #expect(error?.isRetriable == false)
        let count = try await client.withConnection { try $0.query("SELECT count(*) FROM \(identifier: table)").first?.decode(Int.self, at: 0) }
        #expect(count == 0)
        try await dropTable()
    }

    @Test func valuesRoundTripWithTheirTypes() async throws {
        let table = self.table
        let at = Date(timeIntervalSince1970: 1_795_586_095.123456)
        let raw = PostgresBytes([0, 1, 2, 254, 255])
        let decoded = try await client.withConnection { connection -> PostgresRow in
            try connection.execute(
                "INSERT INTO \(table) (id, name, amount, at, raw, ok) VALUES ($1, $2, $3, $4, $5, $6)",
                [Int64.max, nil, 12.5, at, raw, true])
            let rows = try connection.query("SELECT id, name, amount, at, raw, ok FROM \(identifier: table)")
            return try #require(rows.first)
        }
        #expect(try decoded.decode(Int64.self, "id") == Int64.max)
        #expect(try decoded.decode(String.self, "name") == nil)
        #expect(try decoded.decode(Double.self, "amount") == 12.5)
        let readAt = try #require(try decoded.decode(Date.self, "at"))
        #expect(abs(readAt.timeIntervalSince(at)) < 0.000_001)
        #expect(try decoded.decode(PostgresBytes.self, "raw") == raw)
        #expect(try decoded.decode(Bool.self, "ok") == true)
        #expect(throws: PostgresError.self) { try decoded.decode(Int.self, "amount") }
        try await dropTable()
    }

    @Test func aTenThousandRowPipelineBatchAndCopy() async throws {
        let table = self.table
        let rows: [[(any PostgresBindable)?]] = (0..<10_000).map { [$0, "name \($0)", Double($0) / 4] }
        let inserted = try await client.withTransaction { connection in
            try connection.executeBatch("INSERT INTO \(table) (id, name, amount) VALUES ($1, $2, $3)", rows, syncEvery: 1000)
        }
        #expect(inserted == 10_000)
        let copied = try await client.withConnection { connection in
            try connection.copy(
                into: table, columns: ["id", "name", "amount"],
                rows: (10_000..<20_000).map { (id: Int) -> [(any PostgresBindable)?] in [id, "tab\there \\ and\nnewline \(id)", nil] })
        }
        #expect(copied == 10_000)
        let (count, sample) = try await client.withConnection { connection in
            let count = try connection.query("SELECT count(*) FROM \(identifier: table)").first?.decode(Int.self, at: 0)
            let sample = try connection.query("SELECT name FROM \(table) WHERE id = $1", [12_345]).first?.decode(String.self, at: 0)
            return (count, sample)
        }
        #expect(count == 20_000)
        #expect(sample == "tab\there \\ and\nnewline 12345")
        try await dropTable()
    }

    @Test func aFailingStatementInAPipelineRollsTheBatchBack() async throws {
        let table = self.table
        let rows: [[(any PostgresBindable)?]] = [[1, "a"], [2, "b"], [1, "duplicate"], [3, "c"]]
        let error = await #expect(throws: PostgresError.self) {
            try await client.withTransaction { connection in
                try connection.executeBatch("INSERT INTO \(table) (id, name) VALUES ($1, $2)", rows, syncEvery: 2)
            }
        }
        #expect(error?.sqlState == PostgresError.uniqueViolation)
        #expect(error?.isDataError == true)
        #expect(error?.message.contains("duplicate") == true)
        let count = try await client.withConnection { try $0.query("SELECT count(*) FROM \(identifier: table)").first?.decode(Int.self, at: 0) }
        #expect(count == 0, "the transaction was rolled back")
        try await dropTable()
    }

    @Test func aPoolLendsAtMostItsSizeAndEveryTaskGetsAConnection() async throws {
        let application = TestEnvironment.unique("pool")
        var configuration = PostgresConfiguration(url: TestEnvironment.databaseURL)
        configuration.poolSize = 3
        configuration.applicationName = application
        let pool = PostgresClient(configuration: configuration, logger: TestEnvironment.logger)
        let observer = client
        let peaks = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<24 {
                group.addTask {
                    try await pool.withConnection { connection in
                        try connection.query("SELECT pg_sleep(0.02)")
                        return 0
                    }
                }
            }
            group.addTask {
                var peak = 0
                for _ in 0..<10 {
                    let open = try await observer.withConnection {
                        try $0.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", [application]).first?.decode(Int.self, at: 0)
                    }
                    peak = max(peak, open ?? 0)
                    try await Task.sleep(for: .milliseconds(10))
                }
                return peak
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect((peaks.max() ?? 0) <= 3)
        #expect((peaks.max() ?? 0) >= 1)
        pool.close()
        try await dropTable()
    }

    @Test(.enabled(if: TestEnvironment.postgresDirectory != nil, "needs a PostgreSQL that scripts/test started"))
    func aServerRestartIsARetriableErrorThenTheNextAttemptReconnects() async throws {
        let directory = try #require(TestEnvironment.postgresDirectory)
        let before = try await client.withConnection { try $0.query("SELECT pg_backend_pid()").first?.decode(Int.self, at: 0) }
        #expect(before != nil)

        try await runScript("pg-stop", directory)
        let duringOutage = await #expect(throws: PostgresError.self) {
            try await client.withConnection { try $0.query("SELECT 1").count }
        }
        #expect(duringOutage?.isRetriable == true, "\(String(describing: duringOutage))")
        #expect([PostgresError.Code.connectionLost, .connectionFailed].contains(duringOutage?.code))

        try await runScript("pg-start", directory)
        let after = try await client.withConnection { try $0.query("SELECT pg_backend_pid()").first?.decode(Int.self, at: 0) }
        #expect(after != nil)
        #expect(after != before, "a new connection after the restart")
        try await dropTable()
    }
}
