import Logging
import Metrics
import Synchronization

/// Checks PostgreSQL every `interval` and records the answer for `/readyz`, and the outbox backlog for `/metrics`
/// (`rapport_outbox_backlog`, and `rapport_outbox_parked`: rows that no form of could be published).
public final class PostgresHealthCheck: PeriodicJob {
    private let client: PostgresClient
    private let health: WorkerHealth
    public let interval: Duration
    private let logger: Logger
    /// Whether the last check reached PostgreSQL: a change is logged.
    private let wasReachable = Mutex(true)

    /// A check of `client` every `interval` (default 5 s).
    public init(client: PostgresClient, health: WorkerHealth, interval: Duration = .seconds(5), logger: Logger) {
        self.client = client
        self.health = health
        self.interval = interval
        self.logger = logger
    }

    public var name: String { "postgres_health" }

    /// A check: never fails (an unreachable PostgreSQL is the answer, recorded for `/readyz`).
    public func round() async throws -> PeriodicRound {
        let reachable: Bool
        do {
            let backlog = try await client.withConnection { try Outbox.backlog(connection: $0) }
            Gauge(label: "rapport_outbox_backlog").record(backlog.waiting)
            Gauge(label: "rapport_outbox_parked").record(backlog.parked)
            reachable = true
        } catch {
            reachable = false
            if wasReachable.withLock({ $0 }) { logger.warning("PostgreSQL unreachable", metadata: [LogKey.error: "\(error)"]) }
        }
        let was = wasReachable.withLock { was in
            defer { was = reachable }
            return was
        }
        if reachable, !was { logger.info("PostgreSQL reachable again") }
        health.postgresChecked(reachable: reachable)
        return .done
    }
}
