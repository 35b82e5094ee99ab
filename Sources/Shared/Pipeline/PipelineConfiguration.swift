/// How a worker's pipeline reads, retries and dead-letters.
public struct PipelineConfiguration: Sendable {
    /// The worker's name, written in `dlq.worker`.
    public var worker: String
    /// The consumer group: the key of the pipeline's offsets, de-duplication and outbox rows.
    public var groupID: String
    /// The topic it reads.
    public var inputTopic: String
    /// Where bad messages go. Default: `<inputTopic>-dlq`.
    public var deadLetterTopic: String
    /// The most messages per batch (one transaction). Default: 500.
    public var batchSize: Int = 500
    /// The most bytes (keys and values) one batch reads: with the consumer's prefetch and the parsed events, what
    /// bounds a worker's memory when messages are large. Default: 8 MiB.
    public var batchMaxBytes: Int = 8 << 20
    /// How many transactions a batch is split into, by partition, run at once on separate connections. Default: 3.
    public var transactionsPerBatch: Int = 3
    /// How long a poll waits for its first message. Default: 100 ms.
    public var batchWait: Duration = .milliseconds(100)
    /// Larger messages are dead-lettered (`too_large`) unread. Default: 1 MiB.
    public var maxMessageBytes: Int = 1 << 20
    /// Whether events of a store are processed; the others are dead-lettered (`schema_violation`). Default: every
    /// store. A worker sets it from its settings file (``StoreDirectory/accepts(_:)``).
    public var acceptsStore: @Sendable (String) -> Bool = { _ in true }
    /// The erased addresses of stores that keep their hashes: an event carrying one is applied by no worker (counted
    /// as skipped). Default: none. A worker sets it from its settings file and `ERASURE_HASH_SALT`.
    public var erasedAddresses: ErasedAddresses?
    /// How many times an event whose handling fails is tried before it is dead-lettered (`handler_failure`).
    /// Default: 3.
    public var maxAttempts: Int = 3
    /// The producer's `message.max.bytes`: a dead letter heavier than this goes as a truncated copy, and an event
    /// whose command is heavier is dead-lettered (`handler_failure`). Default: 1 MiB + 64 KiB.
    public var producerMessageLimit: Int = (1 << 20) + DeadLetter.headerAllowance
    /// The longest a publish can wait for its delivery reports (the producer's delivery timeout and a margin): while
    /// it waits, liveness holds. Default: 40 s.
    public var publishBound: Duration = .seconds(40)
    /// For each topic the pipeline publishes to, the setting that names it (for the log line that says a topic is
    /// missing). Default: the dead-letter topic only.
    public var topicSettings: [String: String] = [:]
    /// The wait between retries of a failed batch or publish. Default: 100 ms doubling to 10 s, with jitter.
    public var backoff = Backoff(base: .milliseconds(100), cap: .seconds(10))

    /// A configuration for `worker` reading `inputTopic` in `groupID`, with every other default.
    public init(worker: String, groupID: String, inputTopic: String) {
        self.worker = worker
        self.groupID = groupID
        self.inputTopic = inputTopic
        self.deadLetterTopic = Topics.deadLetter(of: inputTopic)
        self.topicSettings = [deadLetterTopic: "the input topic's name + \"-dlq\""]
    }
}
