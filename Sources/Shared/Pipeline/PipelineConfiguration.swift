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
    /// How many transactions a batch is split into, by partition, run at once on separate connections. Default: 3.
    public var transactionsPerBatch: Int = 3
    /// How long a poll waits for its first message. Default: 100 ms.
    public var batchWait: Duration = .milliseconds(100)
    /// Larger messages are dead-lettered (`too_large`) unread. Default: 1 MiB.
    public var maxMessageBytes: Int = 1 << 20
    /// How many times an event whose handling fails is tried before it is dead-lettered (`handler_failure`).
    /// Default: 3.
    public var maxAttempts: Int = 3
    /// The wait between retries of a failed batch or publish. Default: 100 ms doubling to 10 s, with jitter.
    public var backoff = Backoff(base: .milliseconds(100), cap: .seconds(10))

    /// A configuration for `worker` reading `inputTopic` in `groupID`, with every other default.
    public init(worker: String, groupID: String, inputTopic: String) {
        self.worker = worker
        self.groupID = groupID
        self.inputTopic = inputTopic
        self.deadLetterTopic = Topics.deadLetter(of: inputTopic)
    }
}
