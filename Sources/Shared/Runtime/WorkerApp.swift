import Logging
import Prometheus
import ServiceLifecycle

/// Builds a worker process: configuration in, a ready-to-run `ServiceGroup` out. The executables' `run` command
/// and the tests call the same function.
public enum WorkerApp {
    /// Connects, applies migrations, and assembles the worker's services in start order (PostgreSQL, probes, health
    /// check, poll loop); shutdown runs in reverse, so the poll loop drains first and PostgreSQL closes last.
    ///
    /// - Parameters:
    ///   - descriptor: Which worker.
    ///   - configuration: Its configuration.
    ///   - registry: Where `/metrics` reads from (the registry behind the process's metrics factory).
    ///   - logger: The root logger.
    /// - Throws: ``PostgresError`` or ``MigrationError`` when the schema cannot be brought up to date within
    ///   `startupTimeout`; ``ConfigurationError`` when librdkafka rejects a property.
    public static func build(
        descriptor: WorkerDescriptor,
        configuration: WorkerConfiguration,
        registry: PrometheusCollectorRegistry,
        logger: Logger,
        startupTimeout: Duration = .seconds(60)
    ) async throws -> ServiceGroup {
        let postgres = PostgresClient(configuration: configuration.postgres, logger: logger)
        try await migrate(descriptor: descriptor, postgres: postgres, logger: logger, timeout: startupTimeout)
        let consumer = try KafkaConsumer(configuration: configuration.consumer, logger: logger)
        let health = WorkerHealth(livenessWindow: configuration.livenessWindow)
        let probes = ProbeServer(port: configuration.httpPort, health: health, registry: registry, logger: logger)
        let healthCheck = PostgresHealthCheck(client: postgres, health: health, logger: logger)
        let loop = ConsumerLoop(
            consumer: consumer,
            topics: [descriptor.inputTopic(configuration.topics)],
            batchSize: configuration.batchSize,
            batchWait: configuration.batchWait,
            health: health,
            logger: logger
        ) { batch in
            // The processing pipeline is not wired in yet: nothing is committed, so nothing read here is lost.
            logger.debug("batch read, not processed", metadata: ["batch.size": "\(batch.count)"])
        }
        var group = ServiceGroupConfiguration(services: [postgres, probes, healthCheck, loop], logger: logger)
        group.gracefulShutdownSignals = [.sigterm, .sigint]
        group.maximumGracefulShutdownDuration = configuration.drainTimeout
        return ServiceGroup(configuration: group)
    }

    /// Applies the shared and the worker's migrations, retrying while PostgreSQL is unreachable.
    public static func migrate(
        descriptor: WorkerDescriptor, postgres: PostgresClient, logger: Logger, timeout: Duration
    ) async throws {
        let migrations = try descriptor.allMigrations()
        let deadline = ContinuousClock.now + timeout
        let backoff = Backoff(base: .milliseconds(200), cap: .seconds(5))
        var attempt = 0
        while true {
            do {
                try await Migrator(client: postgres, logger: logger).migrate(migrations)
                return
            } catch let error as PostgresError where error.isRetriable && ContinuousClock.now < deadline {
                logger.warning("schema migration waiting for PostgreSQL", metadata: [LogKey.error: "\(error)"])
                try await Task.sleep(for: backoff.delay(attempt: attempt))
                attempt += 1
            }
        }
    }
}
