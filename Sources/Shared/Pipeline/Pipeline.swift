import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// The processing pipeline every worker runs, as a `Service`:
///
/// poll a batch → decode and validate each message (bad ones become dead letters; each of the batch's transactions
/// decodes its own partitions' messages) → one PostgreSQL transaction per group of partitions:
/// de-duplicate on (store, messageId), apply the handler, write its commands and the dead letters to the outbox,
/// record the next offsets → commit → publish the outbox rows and wait for delivery → delete them → commit offsets to
/// Kafka. Publishing one batch overlaps the next batch's poll, decoding and transaction (``Publication``), and ends
/// before the next batch's rows go out.
///
/// A transient failure pauses the partitions and retries the same batch with backoff, polling meanwhile so that the
/// member stays in its group; nothing is ever skipped. On shutdown it stops between batches and leaves the group.
public final class Pipeline: Service, Sendable {
    let configuration: PipelineConfiguration
    let consumer: KafkaConsumer
    let rebalance: PartitionRebalanceListener
    let producer: KafkaProducer
    let postgres: PostgresClient
    private let handler: ErasedHandler?
    let health: WorkerHealth
    let metrics: PipelineMetrics
    /// Sends the outbox rows and settles each result, under the one policy the scheduler publishes with too.
    let publisher: OutboxPublisher
    let logger: Logger

    /// A pipeline. `consumer` must have been created with `rebalance` as its rebalance listener. Without a `handler`
    /// the pipeline idles: it keeps its partitions paused and commits nothing.
    public init(
        configuration: PipelineConfiguration, consumer: KafkaConsumer, rebalance: PartitionRebalanceListener, producer: KafkaProducer,
        postgres: PostgresClient, handler: (any PipelineHandler)?, health: WorkerHealth, logger: Logger
    ) {
        self.configuration = configuration
        self.consumer = consumer
        self.rebalance = rebalance
        self.producer = producer
        self.postgres = postgres
        self.handler = handler.map { ErasedHandler($0) }
        self.health = health
        self.metrics = PipelineMetrics(topic: configuration.inputTopic)
        self.publisher = OutboxPublisher(configuration: configuration, producer: producer, postgres: postgres, logger: logger)
        self.logger = logger
    }

    public func run() async throws {
        try consumer.subscribe(to: [configuration.inputTopic])
        logger.info("consumer subscribed", metadata: [LogKey.kafkaTopic: "\(configuration.inputTopic)"])
        var relayFailures = 0
        var relayRewind: [TopicPartition: Int64] = [:]
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                // A previous owner's leftovers and our own rows in flight never go out side by side.
                if !rebalance.arrivals.isEmpty { try await finish() }
                try await relayArrivals()
                if relayFailures > 0 {
                    relayFailures = 0
                    try await resume(rewinding: relayRewind)
                    relayRewind = [:]
                }
            } catch let error where Self.isTransient(error) {
                // The partitions stay marked: their leftovers are relayed before anything new is processed.
                relayFailures += 1
                logger.warning("relaying the outbox failed; retrying", metadata: [LogKey.error: "\(error)"])
                relayRewind.mergeMinimum(try await backOff("relay", attempt: relayFailures))
                continue
            }
            let batch = try await consumer.poll(maxMessages: configuration.batchSize, maxBytes: configuration.batchMaxBytes, maxWait: configuration.batchWait)
            turned()
            if !rebalance.arrivals.isEmpty, !batch.isEmpty {
                // Partitions were assigned during this poll, and it read from them already: a previous owner's
                // leftovers must go out before any command of what follows them, so the batch is read again after
                // the relay at the top of the loop.
                try await resumeRetrying(rewinding: batch.firstOffsets)
                continue
            }
            guard !batch.isEmpty else {
                // Quiet: the last batch's publication ends now rather than with the next batch.
                try await finish()
                continue
            }
            guard let handler else {
                // No behaviour yet: hold the partitions without processing them. Nothing is committed, so whatever
                // this poll read is read again by the member that first has a handler.
                try consumer.pause(Array(consumer.assignment))
                continue
            }
            try await processWithRetry(batch, handler: handler)
        }
        // What is still undelivered on shutdown stays in the outbox for the partitions' next owner.
        try await finish()
        health.shuttingDown()
        logger.info("leaving the consumer group")
        try await consumer.close()
        try? await producer.close()
    }

    /// Tells health and metrics that the poll loop turned.
    func turned() {
        health.pollLoopTurned(assignmentHeld: !consumer.assignment.isEmpty)
        metrics.recordLag(consumer.lag())
    }

    /// Waits `delay` while polling (partitions paused), so that rebalances are served and the member stays alive.
    /// - Returns: The first offset per partition of anything the polls returned anyway; it is read again later.
    func waitPolling(_ delay: Duration) async throws -> [TopicPartition: Int64] {
        var returned: [TopicPartition: Int64] = [:]
        let until = ContinuousClock.now + delay
        while ContinuousClock.now < until, !Task.isShuttingDownGracefully, !Task.isCancelled {
            let remaining = until - ContinuousClock.now
            let messages = try await consumer.poll(maxMessages: 1, maxWait: min(remaining, .milliseconds(100)))
            for message in messages {
                returned[message.topicPartition] = min(returned[message.topicPartition] ?? .max, message.offset)
            }
            turned()
        }
        return returned
    }

    /// Leaves backoff: moves partitions back to `offsets` where given, then resumes every assigned partition.
    func resume(rewinding offsets: [TopicPartition: Int64]) async throws {
        let assigned = consumer.assignment
        try await consumer.seek(offsets.filter { assigned.contains($0.key) })
        try consumer.resume(Array(assigned))
        health.setBackoff(false)
    }

    /// Backs off after the `attempt`th failure at `stage` (the caller has logged it): counts it, pauses the partitions
    /// and waits out the backoff's delay while polling.
    /// - Returns: The first offset per partition of anything the polls returned anyway; it is read again later.
    func backOff(_ stage: String, attempt: Int) async throws -> [TopicPartition: Int64] {
        metrics.retries(stage: stage)
        health.setBackoff(true)
        try consumer.pause(Array(consumer.assignment))
        return try await waitPolling(configuration.backoff.delay(attempt: attempt - 1))
    }

    /// ``resume(rewinding:)`` until it succeeds: a seek the consumer does not finish in time (its fetcher busy) is
    /// tried again after a backoff, polling with the partitions paused meanwhile, never left to stop the worker.
    func resumeRetrying(rewinding offsets: [TopicPartition: Int64]) async throws {
        var offsets = offsets
        var attempt = 0
        while true {
            do {
                try await resume(rewinding: offsets)
                return
            } catch let error where Self.isTransient(error) {
                attempt += 1
                logger.warning("moving partitions back failed; retrying", metadata: [LogKey.error: "\(error)"])
                offsets.mergeMinimum(try await backOff("seek", attempt: attempt))
                guard !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
            }
        }
    }

    /// Whether `error` may pass by itself (a retriable PostgreSQL or Kafka error): the batch is tried again.
    static func isTransient(_ error: any Error) -> Bool {
        switch error {
        case let error as PostgresError: error.isRetriable
        case let error as KafkaError: error.isRetriable && !error.isFatal
        default: false
        }
    }
}

extension Dictionary where Key == TopicPartition, Value == Int64 {
    /// Keeps the lower offset per partition.
    mutating func mergeMinimum(_ other: [TopicPartition: Int64]) {
        merge(other) { Swift.min($0, $1) }
    }
}
