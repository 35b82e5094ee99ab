import ArgumentParser
import Foundation
import Logging
import Shared

/// Rapport beside the peer (`../shared/peer`: the same guarantees in Python, confluent-kafka and psycopg 3) on the
/// same backlogs, in the same invocation, alternating which goes first each round: CPU seconds of the worker process
/// and of PostgreSQL's processes per 1,000 events (from `/proc`), events/s from process start, and the ratios. With
/// `pg_stat_statements` loaded, each run also prints where PostgreSQL's time went, per statement per event, with the
/// rows written, index entries inserted and WAL bytes per event.
struct VersusBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "versus", abstract: "CPU seconds per 1,000 events of Rapport's workers and PostgreSQL beside the Python peer's, alternating.")

    enum Workload: String, ExpressibleByArgument, CaseIterable {
        case captures, orders, both
    }

    @Option(help: "captures (CaptureWorker), orders (ReceiptWorker) or both.")
    var workload: Workload = .both

    @Option(help: "Email Captured events of distinct consented shoppers with an offer code.")
    var captures = 100_000

    @Option(help: "Order Completed events, three items each, five orders per shopper, all in the last hour.")
    var orders = 50_000

    @Option(help: "Rounds; each runs Rapport and the peer on every workload, the first of the two alternating.")
    var rounds = 2

    @Option(help: "The peer's directory (its bin/CaptureWorker and bin/ReceiptWorker).")
    var peer = "../shared/peer"

    @Option(help: "Statements printed per run from pg_stat_statements (when the server preloads it); 0: none.")
    var statements = 12

    @Flag(help: "Keep each run's database (its name is printed) for EXPLAIN and inspection.")
    var keepDatabases = false

    @OptionGroup var harnessOptions: HarnessOptions

    mutating func run() async throws {
        let logger = Logger.bench
        let peerDirectory = URL(fileURLWithPath: peer).standardizedFileURL
        let venv = ProcessInfo.processInfo.environment["PEER_VENV"] ?? "/tmp/rapport-peer-venv"
        guard FileManager.default.isExecutableFile(atPath: "\(venv)/bin/python") else {
            throw BenchError(
                "the peer needs a Python environment at \(venv) (or PEER_VENV): python3 -m venv \(venv) && \(venv)/bin/pip install 'confluent-kafka>=2.3' 'psycopg[binary]>=3.1'"
            )
        }
        let harness = try harnessOptions.harness(logger: logger)
        print(
            "rapport-bench versus — \(ProcessInfo.processInfo.activeProcessorCount) cores, \(rounds) rounds, peer \(peerDirectory.path), \(harnessOptions.summary)"
        )
        let workloads: [Workload] = workload == .both ? [.captures, .orders] : [workload]
        let now = Date()
        var results: [Workload: [Side: [VersusRun]]] = [:]
        for round in 1...max(rounds, 1) {
            for workload in workloads {
                let sides: [Side] = round % 2 == 1 ? [.rapport, .peer] : [.peer, .rapport]
                for side in sides {
                    let run = try await measure(
                        workload, side: side, round: round, now: now, harness: harness, peerDirectory: peerDirectory, venv: venv, logger: logger)
                    results[workload, default: [:]][side, default: []].append(run)
                    print(run.line(workload: workload, side: side, round: round))
                    if statements > 0 { run.printDetail(statements: statements) }
                    fflush(nil)
                }
            }
        }
        print(
            "\n  workload   rounds   CPU-s per 1,000 events: Rapport (worker + PostgreSQL)   peer (worker + PostgreSQL)   Rapport ÷ peer   events/s Rapport | peer"
        )
        for workload in workloads {
            let rapport = results[workload]?[.rapport] ?? []
            let peer = results[workload]?[.peer] ?? []
            let mine = VersusRun.perThousand(rapport)
            let theirs = VersusRun.perThousand(peer)
            print(
                String(
                    format: "  %@  %6d   %.3f (%.3f + %.3f)                        %.3f (%.3f + %.3f)               %.2f×          %@ | %@",
                    pad(workload.rawValue, 9), rapport.count, mine.total, mine.worker, mine.postgres, theirs.total, theirs.worker, theirs.postgres,
                    mine.total / theirs.total, rapport.map { String(format: "%.0f", $0.rate) }.joined(separator: ", "),
                    peer.map { String(format: "%.0f", $0.rate) }.joined(separator: ", ")))
        }
        try await harness.close()
    }

    enum Side: String {
        case rapport = "Rapport"
        case peer
    }

    /// One worker draining one backlog on a fresh database.
    private func measure(
        _ workload: Workload, side: Side, round: Int, now: Date, harness: BenchHarness, peerDirectory: URL, venv: String, logger: Logger
    ) async throws -> VersusRun {
        let (worker, inputVariable) = workload == .captures ? ("CaptureWorker", "SHOPPER_EVENTS_TOPIC") : ("ReceiptWorker", "CHECKOUT_EVENTS_TOPIC")
        let tag = "\(workload.rawValue)-\(side.rawValue.lowercased())-\(round)"
        let topic = "versus-\(tag)"
        let group = "versus-\(tag)"
        try harness.cluster.createTopic(topic, partitions: harness.partitions)
        try harness.cluster.createTopic(Topics.deadLetter(of: topic), partitions: 1)
        let database = try await BenchDatabase(prefix: "rapport_versus", logger: logger)
        let count = workload == .captures ? captures : orders
        // In the last hour, so that every event may start a conversation (first orders start journeys).
        let at = { (index: Int) in now.addingTimeInterval(-3600 + 3000 * Double(index) / Double(max(count, 1))) }
        try await harness.publish(
            workload == .captures
                ? (0..<count).map { CaptureBenchmark.newShopperCapture($0, at: at($0), topic: topic) }
                : (0..<count).map { ReceiptBenchmark.order($0, customers: max(count / 5, 1), at: at($0), topic: topic) })
        let client = database.client(logger: logger)
        defer { client.close() }
        let server = try await ServerProbe(client: client)
        let before = try await server.sample()
        var environment = harness.environment(database: database, inputVariable: inputVariable, topic: topic, group: group)
        environment["BATCH_TIMEOUT_MS"] = environment["BATCH_WAIT_MS"]  // the peer's name for it
        environment["PEER_VENV"] = venv
        let executable = side == .rapport ? worker : peerDirectory.appendingPathComponent("bin/\(worker)").path
        let started = ContinuousClock.now
        let process = try BenchWorker(executable, environment: environment)
        defer { process.stop() }
        let offsets = side == .rapport ? "rapport_consumer_offsets" : "consumer_offsets"
        // Done when the offsets stored with the state reach the backlog's end, and (Rapport) the work the worker defers
        // past its batches is done too: the next-sale model folded, every new shopper's "customers like you" computed.
        while true {
            guard process.process.isRunning else { throw BenchError("\(executable) exited early") }
            if try await BenchHarness.storedOffsets(client, table: offsets, group: group, topic: topic) >= count { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let drained = ContinuousClock.now
        let drainedWorker = ProcessCPU.seconds(of: process.process.processIdentifier) ?? .nan
        let drainedServer = try await server.sample()
        if side == .rapport, workload == .orders {
            while try await !client.withConnection({ connection in
                try connection.query(
                    """
                    SELECT NOT EXISTS (SELECT FROM receipt_model_change_sets) AND NOT EXISTS (SELECT FROM receipt_model_changes)
                       AND NOT EXISTS (SELECT FROM receipt_shopper_breadth WHERE suggested IS NULL)
                    """
                ).first?.decode(Bool.self) ?? false
            }) {
                guard process.process.isRunning else { throw BenchError("\(executable) exited early") }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let workerSeconds = ProcessCPU.seconds(of: process.process.processIdentifier) ?? .nan
        let after = try await server.sample()
        let settled = ContinuousClock.now
        process.stop()
        let detail = try await server.detail(statements: statements)
        client.close()
        if keepDatabases {
            print("      (kept \(database.name))")
        } else {
            try await database.drop()
        }
        return VersusRun(
            events: count, rate: Double(count) / (drained - started).seconds, settledAfter: (settled - drained).seconds,
            deferredSeconds: workerSeconds - drainedWorker + after.cpu - drainedServer.cpu, workerSeconds: workerSeconds,
            postgresSeconds: after.cpu - before.cpu, walBytes: after.wal - before.wal, detail: detail)
    }
}

/// What one run measured.
struct VersusRun {
    let events: Int
    /// Events/s from the worker's start to the last offset stored.
    let rate: Double
    /// Seconds from the last offset to the deferred work done (Rapport's model; 0 for the peer), inside the CPU figure.
    let settledAfter: Double
    /// CPU seconds (worker and PostgreSQL) spent in that time, inside the CPU figure.
    let deferredSeconds: Double
    let workerSeconds: Double
    let postgresSeconds: Double
    let walBytes: Double
    let detail: ServerProbe.Detail

    func line(workload: VersusBenchmark.Workload, side: VersusBenchmark.Side, round: Int) -> String {
        let thousands = Double(events) / 1000
        return String(
            format: "  round %d  %@ %@ %7.0f events/s   CPU-s/1,000: worker %.3f + PostgreSQL %.3f = %.3f   WAL %.2f kB/event%@", round,
            pad(workload.rawValue, 9), pad(side.rawValue, 8), rate, workerSeconds / thousands, postgresSeconds / thousands,
            (workerSeconds + postgresSeconds) / thousands,
            walBytes / Double(events) / 1000,
            settledAfter > 0.05
                ? String(format: "   (deferred work settled %.1f s after, %.3f CPU-s/1,000 of it)", settledAfter, deferredSeconds / thousands) : "")
    }

    /// Rows and index entries per event by table, then the costliest statements per 1,000 events.
    func printDetail(statements: Int) {
        let perEvent = { (value: Double) in value / Double(events) }
        let tables = detail.tables.filter { $0.inserted + $0.updated + $0.deleted > 0 }
        if !tables.isEmpty {
            let rows = tables.reduce(0.0) { $0 + perEvent(Double($1.inserted + $1.updated + $1.deleted)) }
            let entries = tables.reduce(0.0) { $0 + perEvent(Double($1.indexEntries)) }
            print(
                String(
                    format:
                        "      rows written %.2f per event, index entries inserted %.2f per event (at most: a partial index counted as if every row matched):",
                    rows, entries))
            for table in tables {
                print(
                    String(
                        format: "        %@ ins %5.2f  upd %5.2f (HOT %5.2f)  del %5.2f  indexes %d  entries %5.2f", pad(table.name, 34),
                        perEvent(Double(table.inserted)),
                        perEvent(Double(table.updated)), perEvent(Double(table.hotUpdated)), perEvent(Double(table.deleted)), table.indexes,
                        perEvent(Double(table.indexEntries))))
            }
        }
        guard !detail.statements.isEmpty else { return }
        let total = detail.statements.reduce(0.0) { $0 + $1.milliseconds }
        print(String(format: "      statements: %.1f ms of execution per 1,000 events (the %d costliest below)", 1000 * total / Double(events), statements))
        for statement in detail.statements.prefix(statements) {
            print(
                String(
                    format: "        %7.1f ms  %6.1f calls  %7.1f rows  %7.1f kB WAL  %6.1f ms I/O   %@", 1000 * statement.milliseconds / Double(events),
                    1000 * Double(statement.calls) / Double(events), 1000 * Double(statement.rows) / Double(events),
                    Double(statement.walBytes) / Double(events), 1000 * statement.ioMilliseconds / Double(events), statement.text))
        }
        print("        (per 1,000 events)")
    }

    /// Sums over runs, per 1,000 events.
    static func perThousand(_ runs: [VersusRun]) -> (worker: Double, postgres: Double, total: Double) {
        let thousands = Double(runs.reduce(0) { $0 + $1.events }) / 1000
        guard thousands > 0 else { return (.nan, .nan, .nan) }
        let worker = runs.reduce(0.0) { $0 + $1.workerSeconds } / thousands
        let postgres = runs.reduce(0.0) { $0 + $1.postgresSeconds } / thousands
        return (worker, postgres, worker + postgres)
    }
}

/// `text` padded with spaces to `width` characters.
func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

/// A process's CPU time from `/proc/<pid>/stat`.
enum ProcessCPU {
    /// utime + stime, plus cutime + cstime (its reaped children) when `children`, in seconds.
    static func seconds(of pid: Int32, children: Bool = false) -> Double? {
        guard let fields = fields(of: pid), fields.count > 14 else { return nil }
        // After the command's closing parenthesis: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        let ticks = (11...(children ? 14 : 12)).compactMap { Double(fields[$0]) }.reduce(0, +)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The parent process of `pid`.
    static func parent(of pid: Int32) -> Int32? {
        fields(of: pid).flatMap { Int32($0[1]) }
    }

    /// The fields after the command name (which may hold spaces and parentheses): `fields[0]` is the state.
    private static func fields(of pid: Int32) -> [Substring]? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ")
    }

    /// PostgreSQL's CPU: the postmaster with its reaped children (backends that exited) and its live children.
    static func postgres(postmaster: Int32) -> Double {
        var total = seconds(of: postmaster, children: true) ?? 0
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry), pid != postmaster, parent(of: pid) == postmaster else { continue }
            total += seconds(of: pid) ?? 0
        }
        return total
    }
}

/// The PostgreSQL server a run's database lives on, when it runs on this machine: its CPU, its WAL position, and
/// (after the run) the database's table statistics and `pg_stat_statements`.
struct ServerProbe {
    let client: PostgresClient
    let postmaster: Int32?
    let statementsLoaded: Bool

    struct Sample {
        let cpu: Double
        let wal: Double
    }

    struct Table {
        let name: String
        let inserted, updated, hotUpdated, deleted, indexes: Int
        /// Index entries the writes inserted: every insert and every update that was not HOT, in every index.
        var indexEntries: Int { (inserted + updated - hotUpdated) * indexes }
    }

    struct Statement {
        let calls, rows, walBytes: Int
        let milliseconds, ioMilliseconds: Double
        let text: String
    }

    struct Detail {
        var tables: [Table] = []
        var statements: [Statement] = []
    }

    init(client: PostgresClient) async throws {
        self.client = client
        let (pid, preload) = try await client.withConnection { connection in
            let pid = try connection.query("SELECT pg_backend_pid()").first?.decode(Int32.self) ?? 0
            let preload = try connection.query("SELECT current_setting('shared_preload_libraries')").first?.decode(String.self) ?? ""
            if preload.contains("pg_stat_statements") {
                _ = try connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                _ = try connection.execute("SELECT pg_stat_statements_reset()")
            }
            return (pid, preload)
        }
        postmaster = ProcessCPU.parent(of: pid)
        statementsLoaded = preload.contains("pg_stat_statements")
    }

    func sample() async throws -> Sample {
        let wal = try await client.withConnection {
            try $0.query("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::float8").first?.decode(Double.self)
        }
        return Sample(cpu: postmaster.map { ProcessCPU.postgres(postmaster: $0) } ?? .nan, wal: wal ?? .nan)
    }

    /// Once the worker has exited: the database's writes by table and its costliest statements.
    func detail(statements: Int) async throws -> Detail {
        // Stop-time statistics arrive as the worker's backends exit.
        for _ in 0..<100 {
            let others = try await client.withConnection {
                try $0.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").first?.decode(Int.self)
            }
            if others ?? 0 == 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await client.withConnection { connection in
            _ = try connection.execute("SELECT pg_stat_clear_snapshot()")
            var detail = Detail()
            detail.tables = try connection.query(
                """
                SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid)
                FROM pg_stat_user_tables t ORDER BY relname
                """
            ).decode((String, Int, Int, Int, Int, Int).self).map {
                Table(name: $0.0, inserted: $0.1, updated: $0.2, hotUpdated: $0.3, deleted: $0.4, indexes: $0.5)
            }
            if statementsLoaded, statements > 0 {
                detail.statements = try connection.query(
                    """
                    SELECT calls, rows, wal_bytes::bigint, total_exec_time, blk_read_time + blk_write_time,
                           left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
                    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                    ORDER BY total_exec_time DESC
                    """
                ).decode((Int, Int, Int, Double, Double, String).self).map {
                    Statement(calls: $0.0, rows: $0.1, walBytes: $0.2, milliseconds: $0.3, ioMilliseconds: $0.4, text: $0.5)
                }
            }
            return detail
        }
    }
}
