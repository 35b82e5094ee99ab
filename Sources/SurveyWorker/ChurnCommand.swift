import ArgumentParser
import Churn
import Foundation
import Logging
import Shared

/// `SurveyWorker churn`: every customer of a store scored as if the clock read `--as-of`, one JSON line each
/// (CONTRACT.md): only orders placed up to then count, and an order refunded or cancelled after it still stood then.
struct ChurnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "churn", abstract: "Print every customer's churn risk in a store as of a moment (JSON lines).")

    @Option(help: "The store (context.storeId).")
    var store = "default"

    @Option(help: "Score as if the clock read this (RFC 3339). Default: now.")
    var asOf: String?

    func validate() throws {
        if let asOf, Date(rfc3339: asOf) == nil { throw ValidationError("--as-of must be an RFC 3339 time, e.g. 2026-11-30T00:00:00Z") }
    }

    func run() async throws {
        let (store, asOf) = (self.store, asOf.flatMap { Date(rfc3339: $0) } ?? Date())
        let lines: [String]? = try await OperatorCommand.withConnection(applicationName: "SurveyWorker churn") { connection in
            guard try ChurnStore.ordersAvailable(connection: connection) else { return nil }
            return try Self.lines(store: store, asOf: asOf, connection: connection)
        }
        guard let lines, !lines.isEmpty else {
            FileHandle.standardError.write(Data("no store \(store): it has no orders up to \(asOf.rfc3339)\n".utf8))
            throw ExitCode(1)
        }
        print(lines.joined(separator: "\n"))
    }

    /// One line per customer, in shopper order.
    static func lines(store: String, asOf: Date, connection: PostgresConnection) throws -> [String] {
        let baseline = try ChurnStore.baseline(store: store, asOf: asOf, connection: connection)
        var lines: [String] = []
        try ChurnStore.forEachPage(store: store, asOf: asOf, limit: 5_000, connection: connection) { customers in
            let known = try ShopperResolver.known(customers.map { (store, $0.shopperID) }, connection: connection)
            for customer in customers {
                let risk = ChurnRisk(customer.summary, baseline: baseline, asOf: asOf)
                let line: JSONValue = .object([
                    "shopper": (known[customer.shopperID] ?? ShopperResolver.Known()).json, "orders": .number(Double(customer.summary.orders)),
                    "first_order_at": .string(customer.summary.firstOrderAt.rfc3339), "last_order_at": .string(customer.summary.lastOrderAt.rfc3339),
                    "expected_gap_days": .number(rounded(risk.expectedGapDays)), "overdue": .number(rounded(risk.overdue)), "risk": .number(rounded(risk.risk)),
                    "band": .string(risk.band.rawValue),
                ])
                lines.append(String(decoding: line.encoded(), as: UTF8.self))
            }
        }
        return lines
    }

    /// Four decimals are plenty for people and for scripts.
    static func rounded(_ value: Double) -> Double { (value * 10_000).rounded() / 10_000 }
}

/// `SurveyWorker rescore`: one pass of the periodic re-scoring now (every store's customers, their scores stored, the
/// lapses' win-backs scheduled for the worker's group), then exit — for a Kubernetes CronJob when the workers run with
/// `CHURN_RESCORE_SECONDS=0`, and for the benchmark.
struct Rescore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Score every customer's churn risk once now and schedule the lapses' win-backs.")

    func run() async throws {
        let environment = Environment()
        let stores = try StoreDirectory(environment: environment)
        let group = try environment.string("KAFKA_GROUP_ID", default: SurveyWorker.descriptor.defaultGroupID)
        let configuration = try PostgresConfiguration(environment: environment, applicationName: "SurveyWorker rescore")
        var logger = Logger(label: "SurveyWorker rescore")
        logger.logLevel = .warning
        let postgres = PostgresClient(configuration: configuration, logger: logger)
        defer { postgres.close() }
        let started = ContinuousClock.now
        let scorer = ChurnScorer(postgres: postgres, stores: stores, groupID: group, interval: .seconds(3600), logger: logger)
        guard let scored = try await scorer.pass() else {
            FileHandle.standardError.write(Data("nothing re-scored: no orders in this database (receipt_orders), or another pass holds the lock\n".utf8))
            throw ExitCode(1)
        }
        print(String(format: "re-scored %d customers in %.1f s", scored, (ContinuousClock.now - started).seconds))
    }
}
