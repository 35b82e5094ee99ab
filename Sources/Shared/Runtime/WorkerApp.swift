import Logging
import Prometheus
import ServiceLifecycle

/// Builds a worker process: configuration in, a ready-to-run `ServiceGroup` out. The executables' `run` command
/// and the tests call the same function.
public enum WorkerApp {
    /// Connects, applies migrations, and assembles the worker's services in start order (PostgreSQL, probes, health
    /// check, de-duplication retention, statistics keeper, pipeline, the worker's own services, drain watchdog); shutdown runs in reverse,
    /// so the watchdog starts its clock, the worker's services stop, the pipeline drains (and closes the producer) and
    /// PostgreSQL closes last.
    ///
    /// - Parameters:
    ///   - descriptor: Which worker.
    ///   - configuration: Its configuration.
    ///   - handler: Its behaviour (``WorkerDescriptor/makeHandler``); `nil` idles the pipeline.
    ///   - registry: Where `/metrics` reads from (the registry behind the process's metrics factory).
    ///   - logger: The root logger.
    /// - Throws: ``PostgresError`` or ``MigrationError`` when the schema cannot be brought up to date within
    ///   `startupTimeout`; ``ConfigurationError`` when librdkafka rejects a property.
    public static func build(
        descriptor: WorkerDescriptor,
        configuration: WorkerConfiguration,
        handler: (any PipelineHandler)?,
        registry: PrometheusCollectorRegistry,
        logger: Logger,
        environment: Environment = Environment(),
        startupTimeout: Duration = .seconds(60)
    ) async throws -> ServiceGroup {
        let postgres = PostgresClient(configuration: configuration.postgres, logger: logger)
        try await migrate(descriptor: descriptor, postgres: postgres, logger: logger, timeout: startupTimeout)
        let rebalance = PartitionRebalanceListener(postgres: postgres, groupID: configuration.consumer.groupID, logger: logger)
        let consumer = try KafkaConsumer(configuration: configuration.consumer, rebalanceListener: rebalance, logger: logger)
        let producer = try KafkaProducer(configuration: configuration.producer, logger: logger)
        if !configuration.consumer.kafka.ignoredVariables.isEmpty {
            logger.warning(
                "KAFKA_* variables of Kubernetes Services ignored (set enableServiceLinks: false to keep them out)",
                metadata: ["variables": "\(configuration.consumer.kafka.ignoredVariables.sorted().joined(separator: ","))"])
        }
        let health = WorkerHealth(livenessWindow: configuration.livenessWindow)
        let probes = ProbeServer(host: configuration.httpHost, port: configuration.httpPort, health: health, registry: registry, logger: logger)
        let healthCheck = PeriodicService(PostgresHealthCheck(client: postgres, health: health, logger: logger), logger: logger)
        let retention = PeriodicService(
            DeduplicationRetention(postgres: postgres, groupID: configuration.consumer.groupID, window: configuration.deduplicationWindow, logger: logger),
            logger: logger)
        let statistics = PeriodicService(StatisticsKeeper(postgres: postgres, component: descriptor.component, logger: logger), logger: logger)
        var pipelineConfiguration = PipelineConfiguration(
            worker: descriptor.name, groupID: configuration.consumer.groupID, inputTopic: descriptor.inputTopic(configuration.topics))
        pipelineConfiguration.batchSize = configuration.batchSize
        let stores = try StoreDirectory(environment: environment)
        pipelineConfiguration.acceptsStore = { stores.accepts($0) }
        pipelineConfiguration.erasedAddresses = try ErasedAddresses(stores: stores, environment: environment)
        pipelineConfiguration.batchMaxBytes = configuration.batchMaxBytes
        pipelineConfiguration.transactionsPerBatch = configuration.transactionsPerBatch
        pipelineConfiguration.batchWait = configuration.batchWait
        pipelineConfiguration.maxMessageBytes = configuration.maxMessageBytes
        pipelineConfiguration.maxAttempts = configuration.maxAttempts
        pipelineConfiguration.producerMessageLimit = configuration.producer.effectiveMessageMaxBytes
        pipelineConfiguration.publishBound = configuration.producer.deliveryTimeout + .seconds(10)
        for (variable, keyPath) in Topics.variables {
            let topic = configuration.topics[keyPath: keyPath]
            pipelineConfiguration.topicSettings[topic] = variable
            pipelineConfiguration.topicSettings[Topics.deadLetter(of: topic)] = "\(variable) + \"-dlq\""
        }
        let pipeline = Pipeline(
            configuration: pipelineConfiguration, consumer: consumer, rebalance: rebalance, producer: producer, postgres: postgres,
            handler: handler, health: health, logger: logger)
        let own = try descriptor.makeServices(
            WorkerContext(
                postgres: postgres, producer: producer, groupID: configuration.consumer.groupID, pipeline: pipelineConfiguration,
                topics: configuration.topics, environment: environment, logger: logger))
        let watchdog = DrainWatchdog(drainTimeout: configuration.drainTimeout, logger: logger)
        let services: [any Service] = [postgres, probes, healthCheck, retention, statistics, pipeline] + own + [watchdog]
        var group = ServiceGroupConfiguration(services: services, logger: logger)
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
