import Foundation
import Logging
import Shared

/// A worker executable (built beside `rapport-bench`) run as its own process for a benchmark, and how long it takes
/// to drain a backlog.
struct BenchWorker {
    let process: Process

    /// Starts `executable` with `environment` added to this process's own; its output goes to `log` when given.
    init(_ executable: String, arguments: [String] = [], environment: [String: String], log: String? = nil) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(executable)
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
    /// `total` (start-up, migrations and the group join are not counted).
    func drainRate(total: Int, done: () async throws -> Int) async throws -> Double {
        var first: ContinuousClock.Instant?
        var count = 0
        while count < total {
            guard process.isRunning else { throw BenchError("\(process.executableURL?.lastPathComponent ?? "worker") exited early") }
            count = try await done()
            if count > 0, first == nil { first = .now }
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

    /// SIGTERM, and waits for the exit.
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
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
        _ = try await admin.withConnection { try $0.execute("CREATE DATABASE \(name)") }
        url = PostgresConfiguration(url: adminURL).replacingDatabase(with: name).url
    }

    /// A client on the database.
    func client(logger: Logger) -> PostgresClient {
        PostgresClient(configuration: PostgresConfiguration(url: url), logger: logger)
    }

    func drop() async throws {
        let name = self.name
        _ = try await admin.withConnection { try $0.execute("DROP DATABASE \(name) WITH (FORCE)") }
        admin.close()
    }
}
