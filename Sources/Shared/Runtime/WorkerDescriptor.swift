import ArgumentParser
import Logging
import ServiceLifecycle

/// What makes one worker different from another, as far as the shared runtime is concerned.
public struct WorkerDescriptor: Sendable {
    /// The executable's name, e.g. `CaptureWorker`.
    public var name: String
    /// The owner of its tables and migrations, e.g. `capture`.
    public var component: String
    /// Its consumer group unless `KAFKA_GROUP_ID` says otherwise, e.g. `rapport-capture`.
    public var defaultGroupID: String
    /// Its probe port unless `HTTP_PORT` says otherwise.
    public var defaultHTTPPort: Int
    /// Which topic it reads.
    public var inputTopic: @Sendable (Topics) -> String
    /// Its own migrations (the shared ones are applied first by the runtime).
    public var migrations: @Sendable () throws -> [Migration]
    /// Its behaviour, given the topic names and the environment (its own settings); `nil` while it has none (the
    /// pipeline then idles and commits nothing). Called at start, before anything connects.
    /// - Throws: ``ConfigurationError`` naming the variable that is wrong.
    public var makeHandler: @Sendable (Topics, Environment) throws -> (any PipelineHandler)?
    /// Services of its own that run beside the pipeline (a scheduler, a periodic job), made once PostgreSQL and the
    /// producer exist; they start after the pipeline and stop before it. Default: none.
    /// - Throws: ``ConfigurationError`` naming the variable that is wrong.
    public var makeServices: @Sendable (WorkerContext) throws -> [any Service]

    /// Describes a worker.
    public init(
        name: String,
        component: String,
        defaultGroupID: String,
        defaultHTTPPort: Int,
        inputTopic: @escaping @Sendable (Topics) -> String,
        migrations: @escaping @Sendable () throws -> [Migration],
        makeHandler: @escaping @Sendable (Topics, Environment) throws -> (any PipelineHandler)? = { _, _ in nil },
        makeServices: @escaping @Sendable (WorkerContext) throws -> [any Service] = { _ in [] }
    ) {
        self.name = name
        self.component = component
        self.defaultGroupID = defaultGroupID
        self.defaultHTTPPort = defaultHTTPPort
        self.inputTopic = inputTopic
        self.migrations = migrations
        self.makeHandler = makeHandler
        self.makeServices = makeServices
    }

    /// The shared migrations, then this worker's.
    public func allMigrations() throws -> [Migration] {
        try Migration.shared() + migrations()
    }
}

/// A worker executable: its descriptor, read by the shared `run` and `migrate` commands.
public protocol WorkerDefinition {
    /// The worker's descriptor.
    static var descriptor: WorkerDescriptor { get }

    /// Subcommands of its own beside `run` and `migrate` (CaptureWorker's `explain`). Default: none.
    static var subcommands: [any ParsableCommand.Type] { get }
}

extension WorkerDefinition {
    public static var subcommands: [any ParsableCommand.Type] { [] }
}

/// What a worker's own services are made from: the process's PostgreSQL pool and producer, its consumer group, topics,
/// environment and logger.
public struct WorkerContext: Sendable {
    public var postgres: PostgresClient
    public var producer: KafkaProducer
    /// The worker's consumer group (`KAFKA_GROUP_ID`): it also names the worker's scheduled steps and outbox rows.
    public var groupID: String
    /// The worker's pipeline configuration: what publishing the outbox needs beside the producer (its dead-letter
    /// topic, its name, the producer's message limit), for a service that writes commands of its own.
    public var pipeline: PipelineConfiguration
    public var topics: Topics
    public var environment: Environment
    public var logger: Logger
}

extension WorkerContext {
    /// The worker's scheduler of its steps, deciding them with `handler` — unless `SCHEDULER_ENABLED=false` leaves
    /// them to other replicas; `SCHEDULER_INTERVAL_MS` is how long it idles between looks (10–3,600,000, default 1000).
    /// - Throws: ``ConfigurationError`` naming the variable.
    public func scheduler(handler: any StepHandler) throws -> PeriodicService? {
        guard try environment.choice("SCHEDULER_ENABLED", default: "true", among: ["true", "false"]) == "true" else { return nil }
        let interval = try environment.integer("SCHEDULER_INTERVAL_MS", default: 1000, in: 10...3_600_000)
        return PeriodicService(
            Scheduler(postgres: postgres, producer: producer, pipeline: pipeline, handler: handler, interval: .milliseconds(interval), logger: logger),
            logger: logger)
    }
}
