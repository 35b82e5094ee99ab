import Logging
import Metrics
import ServiceLifecycle

/// Checks PostgreSQL every `interval` and records the answer for `/readyz`, and the outbox backlog for `/metrics`
/// (`rapport_outbox_backlog`, and `rapport_outbox_parked`: rows that no form of could be published).
public final class PostgresHealthCheck: Service, Sendable {
    private let client: PostgresClient
    private let health: WorkerHealth
    private let interval: Duration
    private let logger: Logger

    /// A check of `client` every `interval` (default 5 s).
    public init(client: PostgresClient, health: WorkerHealth, interval: Duration = .seconds(5), logger: Logger) {
        self.client = client
        self.health = health
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var wasReachable = true
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let reachable: Bool
            do {
                let backlog = try await client.withConnection { try Outbox.backlog(connection: $0) }
                Gauge(label: "rapport_outbox_backlog").record(backlog.waiting)
                Gauge(label: "rapport_outbox_parked").record(backlog.parked)
                reachable = true
            } catch {
                reachable = false
                if wasReachable { logger.warning("PostgreSQL unreachable", metadata: [LogKey.error: "\(error)"]) }
            }
            if reachable, !wasReachable { logger.info("PostgreSQL reachable again") }
            wasReachable = reachable
            health.postgresChecked(reachable: reachable)
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
    }
}
