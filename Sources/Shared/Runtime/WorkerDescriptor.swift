import ArgumentParser

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

    /// Describes a worker.
    public init(
        name: String,
        component: String,
        defaultGroupID: String,
        defaultHTTPPort: Int,
        inputTopic: @escaping @Sendable (Topics) -> String,
        migrations: @escaping @Sendable () throws -> [Migration],
        makeHandler: @escaping @Sendable (Topics, Environment) throws -> (any PipelineHandler)? = { _, _ in nil }
    ) {
        self.name = name
        self.component = component
        self.defaultGroupID = defaultGroupID
        self.defaultHTTPPort = defaultHTTPPort
        self.inputTopic = inputTopic
        self.migrations = migrations
        self.makeHandler = makeHandler
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
