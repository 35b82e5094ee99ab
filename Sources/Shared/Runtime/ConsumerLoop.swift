import Logging
import Metrics
import ServiceLifecycle

/// The worker's poll loop as a `Service`: joins the group, polls batches and hands them to `handle`, keeps the
/// liveness and lag signals fresh, and on graceful shutdown stops polling, lets the batch in hand finish, and leaves
/// the group.
public final class ConsumerLoop: Service, Sendable {
    /// What the loop does with each non-empty batch.
    public typealias BatchHandler = @Sendable ([KafkaMessage]) async throws -> Void

    private let consumer: KafkaConsumer
    private let topics: [String]
    private let batchSize: Int
    private let batchWait: Duration
    private let health: WorkerHealth
    private let handle: BatchHandler
    private let logger: Logger

    /// A loop reading `topics` through `consumer`.
    public init(
        consumer: KafkaConsumer, topics: [String], batchSize: Int, batchWait: Duration, health: WorkerHealth,
        logger: Logger, handle: @escaping BatchHandler
    ) {
        self.consumer = consumer
        self.topics = topics
        self.batchSize = batchSize
        self.batchWait = batchWait
        self.health = health
        self.handle = handle
        self.logger = logger
    }

    public func run() async throws {
        try consumer.subscribe(to: topics)
        logger.info("consumer subscribed", metadata: [LogKey.kafkaTopic: "\(topics.joined(separator: ","))"])
        let iterations = Counter(label: "rapport_poll_loop_iterations_total")
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let batch = try await consumer.poll(maxMessages: batchSize, maxWait: batchWait)
            iterations.increment()
            health.pollLoopTurned(assignmentHeld: !consumer.assignment.isEmpty)
            for partition in consumer.lag() {
                guard let lag = partition.lag else { continue }
                Gauge(
                    label: "rapport_kafka_consumer_lag",
                    dimensions: [("topic", partition.topicPartition.topic), ("partition", "\(partition.topicPartition.partition)")]
                ).record(lag)
            }
            if !batch.isEmpty { try await handle(batch) }
        }
        health.shuttingDown()
        logger.info("leaving the consumer group")
        try await consumer.close()
    }
}
