import ArgumentParser
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// A worker executable's command line: `run` (the default), `migrate`, `dlq replay`, and the worker's own commands.
public struct WorkerCommand<Worker: WorkerDefinition>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: Worker.descriptor.name,
            abstract: "Rapport \(Worker.descriptor.name). Configured by environment variables (see the README).",
            subcommands: [RunWorker<Worker>.self, MigrateWorker<Worker>.self, DeadLetterCommand<Worker>.self] + Worker.subcommands,
            defaultSubcommand: RunWorker<Worker>.self
        )
    }

    public init() {}
}

/// Runs the worker until SIGTERM or SIGINT.
public struct RunWorker<Worker: WorkerDefinition>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "run", abstract: "Apply migrations, then consume until SIGTERM (the default).")
    }

    public init() {}

    public func run() async throws {
        let descriptor = Worker.descriptor
        let environment = Environment()
        let configuration = try WorkerConfiguration(descriptor: descriptor, environment: environment)
        let handler = try descriptor.makeHandler(configuration.topics, environment)
        bootstrapLogging(format: configuration.logFormat, level: configuration.logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        var logger = Logger(label: descriptor.name)
        logger[metadataKey: LogKey.worker] = "\(descriptor.name)"
        // Start-up (waiting for PostgreSQL, migrations) ends cleanly on SIGTERM too, before the group handles signals.
        let building = Task {
            try await WorkerApp.build(descriptor: descriptor, configuration: configuration, handler: handler, registry: registry, logger: logger)
        }
        let signals = StartupSignals { building.cancel() }
        let group: ServiceGroup?
        do {
            group = try await building.value
        } catch _ where signals.fired {
            group = nil
        }
        signals.stop()
        // A signal that came after the start completed, before the group listens, stops the worker too.
        guard let group, !signals.fired else {
            logger.info("stopped during start-up")
            return
        }
        try await group.run()
        logger.info("stopped")
    }
}

/// Applies the migrations and exits: for a Kubernetes Job before a rollout.
public struct MigrateWorker<Worker: WorkerDefinition>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "migrate", abstract: "Apply the schema migrations (under an advisory lock) and exit.")
    }

    public init() {}

    public func run() async throws {
        let descriptor = Worker.descriptor
        let environment = Environment()
        let postgresConfiguration = try PostgresConfiguration(environment: environment, applicationName: descriptor.name)
        let (format, level) = try WorkerConfiguration.logging(environment: environment)
        bootstrapLogging(format: format, level: level)
        let logger = Logger(label: descriptor.name)
        let postgres = PostgresClient(configuration: postgresConfiguration, logger: logger)
        defer { postgres.close() }
        try await WorkerApp.migrate(descriptor: descriptor, postgres: postgres, logger: logger, timeout: .seconds(60))
    }
}

/// Configures swift-log for the process; only entry points call it.
func bootstrapLogging(format: WorkerConfiguration.LogFormat, level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        switch format {
        case .json:
            return JSONLogHandler(label: label, level: level)
        case .text:
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
