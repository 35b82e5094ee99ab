import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// The processing pipeline every worker runs, as a `Service`:
///
/// poll a batch → decode and validate each message (bad ones become dead letters) → one PostgreSQL transaction:
/// de-duplicate on (store, messageId), apply the handler, write its commands and the dead letters to the outbox,
/// record the next offsets → commit → publish the outbox rows and wait for delivery → delete them → commit offsets to
/// Kafka.
///
/// A transient failure pauses the partitions and retries the same batch with backoff, polling meanwhile so that the
/// member stays in its group; nothing is ever skipped. On shutdown it stops between batches and leaves the group.
public final class Pipeline: Service, Sendable {
    private let configuration: PipelineConfiguration
    private let consumer: KafkaConsumer
    private let offsets: OffsetStore
    private let producer: KafkaProducer
    private let postgres: PostgresClient
    private let handler: (any PipelineHandler)?
    private let health: WorkerHealth
    private let metrics: PipelineMetrics
    private let logger: Logger

    /// A pipeline. `consumer` must have been created with `offsets` as its rebalance listener. Without a `handler`
    /// the pipeline idles: it keeps its partitions paused and commits nothing.
    public init(
        configuration: PipelineConfiguration, consumer: KafkaConsumer, offsets: OffsetStore, producer: KafkaProducer,
        postgres: PostgresClient, handler: (any PipelineHandler)?, health: WorkerHealth, logger: Logger
    ) {
        self.configuration = configuration
        self.consumer = consumer
        self.offsets = offsets
        self.producer = producer
        self.postgres = postgres
        self.handler = handler
        self.health = health
        self.metrics = PipelineMetrics(topic: configuration.inputTopic)
        self.logger = logger
    }

    public func run() async throws {
        try consumer.subscribe(to: [configuration.inputTopic])
        logger.info("consumer subscribed", metadata: [LogKey.kafkaTopic: "\(configuration.inputTopic)"])
        var relayFailures = 0
        var relayRewind: [TopicPartition: Int64] = [:]
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await relayArrivals()
                if relayFailures > 0 {
                    relayFailures = 0
                    try await resume(rewinding: relayRewind)
                    relayRewind = [:]
                }
            } catch where Self.isTransient(error) {
                // The partitions stay marked: their leftovers are relayed before anything new is processed.
                relayFailures += 1
                metrics.retries(stage: "relay")
                health.setBackoff(true)
                logger.warning("relaying the outbox failed; retrying", metadata: [LogKey.error: "\(error)"])
                try consumer.pause(Array(consumer.assignment))
                relayRewind.mergeMinimum(try await waitPolling(configuration.backoff.delay(attempt: relayFailures - 1)))
                continue
            }
            let batch = try await consumer.poll(maxMessages: configuration.batchSize, maxWait: configuration.batchWait)
            turned()
            guard !batch.isEmpty else { continue }
            guard let handler else {
                // No behaviour yet: hold the partitions without processing them. Nothing is committed, so whatever
                // this poll read is read again by the member that first has a handler.
                try consumer.pause(Array(consumer.assignment))
                continue
            }
            try await processWithRetry(batch, handler: handler)
        }
        health.shuttingDown()
        logger.info("leaving the consumer group")
        try await consumer.close()
        try? await producer.close()
    }

    private func turned() {
        health.pollLoopTurned(assignmentHeld: !consumer.assignment.isEmpty)
        metrics.recordLag(consumer.lag())
    }

    // MARK: - One batch, retried until it commits

    /// Why a batch has to be tried again.
    private struct RetryBatch: Error {
        /// Events that failed in the handler and have attempts left.
        var failed: [MessageKey]
    }

    /// A message's coordinates: what attempts are counted by.
    struct MessageKey: Hashable, Sendable {
        var topicPartition: TopicPartition
        var offset: Int64
    }

    private func processWithRetry(_ batch: [KafkaMessage], handler: any PipelineHandler) async throws {
        var batch = batch
        var attempts: [MessageKey: Int] = [:]
        var retry = 0
        var rewind: [TopicPartition: Int64] = [:]
        var commitOutcomeUnknown = false
        while true {
            do {
                if commitOutcomeUnknown {
                    // The failed attempt may have committed after all (PostgreSQL went away during COMMIT): its
                    // outbox rows are then owed. Publish whatever these partitions have left, oldest first; the
                    // retry then finds its events applied and emits nothing twice.
                    try await relay(Set(batch.map(\.topicPartition)).map(\.partition))
                    commitOutcomeUnknown = false
                }
                try await process(batch, handler: handler, attempts: attempts)
                if retry > 0 {
                    // Read on exactly after this batch, and again from anything a poll returned while paused.
                    try await resume(rewinding: batch.nextOffsets.merging(rewind) { afterBatch, _ in afterBatch })
                    logger.info("batch committed after retrying", metadata: ["retries": "\(retry)"])
                }
                return
            } catch let error as RetryBatch {
                for key in error.failed { attempts[key, default: 0] += 1 }
                logger.warning("events failed in the handler; retrying the batch", metadata: ["events": "\(error.failed.count)"])
            } catch {
                guard Self.isTransient(error) else { throw error }
                commitOutcomeUnknown = true
                logger.warning("batch failed; retrying", metadata: [LogKey.error: "\(error)"])
            }
            retry += 1
            metrics.retries(stage: "batch")
            health.setBackoff(true)
            try consumer.pause(Array(consumer.assignment))
            rewind.mergeMinimum(try await waitPolling(configuration.backoff.delay(attempt: retry - 1)))
            guard !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
            // Partitions revoked meanwhile belong to another member now, which resumes from their recorded offsets.
            let assigned = consumer.assignment
            batch.removeAll { !assigned.contains($0.topicPartition) }
            guard !batch.isEmpty else {
                try await resume(rewinding: rewind)
                return
            }
        }
    }

    /// Waits `delay` while polling (partitions paused), so that rebalances are served and the member stays alive.
    /// - Returns: The first offset per partition of anything the polls returned anyway; it is read again later.
    private func waitPolling(_ delay: Duration) async throws -> [TopicPartition: Int64] {
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
    private func resume(rewinding offsets: [TopicPartition: Int64]) async throws {
        let assigned = consumer.assignment
        try await consumer.seek(offsets.filter { assigned.contains($0.key) })
        try consumer.resume(Array(assigned))
        health.setBackoff(false)
    }

    static func isTransient(_ error: any Error) -> Bool {
        switch error {
        case let error as PostgresError: error.isRetriable
        case let error as KafkaError: error.isRetriable && !error.isFatal
        default: false
        }
    }

    /// Decodes, applies and commits one batch, then publishes its outbox rows and commits its offsets.
    private func process(_ batch: [KafkaMessage], handler: any PipelineHandler, attempts: [MessageKey: Int]) async throws {
        let started = ContinuousClock.now
        var events: [InboundEvent] = []
        var deadLetters: [DeadLetter] = []
        var skipped = 0
        for message in batch {
            do {
                switch try SegmentMessage.decode(message.value, sizeLimit: configuration.maxMessageBytes) {
                case .event(let event): events.append(InboundEvent(message: event, source: message))
                case .skipped: skipped += 1
                }
            } catch {
                deadLetters.append(DeadLetter(source: message, failure: error))
            }
        }
        let decodedAt = ContinuousClock.now
        let configuration = self.configuration
        let nextOffsets = batch.nextOffsets
        let (decoded, bad) = (events, deadLetters)
        let committed = try await postgres.withTransaction { connection in
            try Self.apply(
                events: decoded, deadLetters: bad, nextOffsets: nextOffsets, handler: handler, attempts: attempts,
                configuration: configuration, connection: connection)
        }
        let committedAt = ContinuousClock.now
        try await publish(committed.outbox)
        let publishedAt = ContinuousClock.now
        do {
            try await consumer.commit(nextOffsets)
        } catch let error as KafkaError where error.isRetriable {
            // PostgreSQL holds the offsets that count; Kafka's catch up with the next commit.
            logger.debug("offset commit refused", metadata: [LogKey.error: "\(error)"])
        }
        logger.debug(
            "batch done",
            metadata: [
                "batch.size": "\(batch.count)", "batch.decode": "\(decodedAt - started)", "batch.transaction": "\(committedAt - decodedAt)",
                "batch.publish": "\(publishedAt - committedAt)", "batch.kafka_commit": "\(ContinuousClock.now - publishedAt)",
            ])
        metrics.batch(
            size: batch.count, duration: ContinuousClock.now - started, handled: committed.handled, duplicates: committed.duplicates,
            skipped: skipped, deadLetters: committed.deadLetters, commands: committed.commands)
        for deadLetter in committed.deadLetters {
            logger.warning(
                "message dead-lettered",
                metadata: [
                    LogKey.kafkaTopic: "\(deadLetter.source.topicPartition.topic)", LogKey.kafkaPartition: "\(deadLetter.source.topicPartition.partition)",
                    LogKey.kafkaOffset: "\(deadLetter.source.offset)", "dlq.reason": "\(deadLetter.failure.reason.rawValue)",
                ])
        }
    }

    /// What a batch's transaction committed.
    private struct Committed: Sendable {
        var outbox: [Outbox.Row]
        var handled: [InboundEvent]
        var duplicates: Int
        var deadLetters: [DeadLetter]
        var commands: [OutboundCommand]
    }

    /// The batch's transaction: de-duplicate, apply, write the outbox, record offsets.
    private static func apply(
        events: [InboundEvent], deadLetters: [DeadLetter], nextOffsets: [TopicPartition: Int64], handler: any PipelineHandler,
        attempts: [MessageKey: Int], configuration: PipelineConfiguration, connection: PostgresConnection
    ) throws -> Committed {
        let fresh = try deduplicate(events, groupID: configuration.groupID, connection: connection)
        var deadLetters = deadLetters
        var commands: [OutboundCommand] = []
        var handled = fresh
        try connection.execute("SAVEPOINT rapport_batch")
        do {
            commands = try handler.handle(fresh, connection: connection)
            try connection.execute("RELEASE SAVEPOINT rapport_batch")
        } catch let error as PostgresError where error.isRetriable {
            throw error
        } catch {
            // Find the event(s) that fail: each alone, in its own savepoint.
            try connection.execute("ROLLBACK TO SAVEPOINT rapport_batch")
            handled = []
            var retry: [MessageKey] = []
            for event in fresh {
                let key = MessageKey(topicPartition: event.source.topicPartition, offset: event.source.offset)
                try connection.execute("SAVEPOINT rapport_event")
                do {
                    commands += try handler.handle([event], connection: connection)
                    try connection.execute("RELEASE SAVEPOINT rapport_event")
                    handled.append(event)
                } catch let error as PostgresError where error.isRetriable {
                    throw error
                } catch {
                    try connection.execute("ROLLBACK TO SAVEPOINT rapport_event")
                    if attempts[key, default: 0] + 1 >= configuration.maxAttempts {
                        deadLetters.append(DeadLetter(source: event.source, failure: DecodeFailure(.handlerFailure, Self.describe(error))))
                    } else {
                        retry.append(key)
                    }
                }
            }
            if !retry.isEmpty { throw RetryBatch(failed: retry) }
        }
        let failedAt = Date()
        var entries = deadLetters.map { deadLetter in
            Outbox.Entry(
                source: deadLetter.source.topicPartition,
                message: deadLetter.outbound(topic: configuration.deadLetterTopic, worker: configuration.worker, failedAt: failedAt),
                commandID: nil)
        }
        // A command's row belongs to the partition of the event that caused it: that partition's next owner relays it,
        // before it processes anything newer from the same shopper.
        let sources = Dictionary(handled.map { (CausationKey(store: $0.message.storeID, message: $0.message.messageID), $0.source.topicPartition) }) {
            first, _ in first
        }
        let fallback = handled.first?.source.topicPartition ?? nextOffsets.keys.sorted().first ?? TopicPartition(topic: configuration.inputTopic, partition: 0)
        entries += commands.map { command in
            Outbox.Entry(
                source: sources[CausationKey(store: command.storeID, message: command.causationID)] ?? fallback,
                message: KafkaOutboundMessage(
                    topic: command.topic, key: Array(command.key.utf8), value: command.value,
                    headers: [KafkaHeader(key: "content-type", text: "application/json")]),
                commandID: command.id)
        }
        let ids = try Outbox.write(entries, group: configuration.groupID, connection: connection)
        try OffsetStore.record(nextOffsets, groupID: configuration.groupID, connection: connection)
        return Committed(
            outbox: zip(ids, entries).map { Outbox.Row(id: $0, message: $1.message) }, handled: handled,
            duplicates: events.count - fresh.count, deadLetters: deadLetters, commands: commands)
    }

    /// An event's identity within the group: the contract's de-duplication key.
    private struct CausationKey: Hashable {
        var store: String
        var message: String
    }

    /// The events whose (store, messageId) this group has not applied before, first occurrence only; records them.
    private static func deduplicate(_ events: [InboundEvent], groupID: String, connection: PostgresConnection) throws -> [InboundEvent] {
        guard !events.isEmpty else { return [] }
        typealias Key = CausationKey
        let inserted = try connection.query(
            """
            INSERT INTO rapport_processed_messages (group_id, store_id, message_id)
            SELECT $1, u.store_id, u.message_id FROM unnest($2::text[], $3::text[]) AS u(store_id, message_id)
            ON CONFLICT DO NOTHING
            RETURNING store_id, message_id
            """,
            [groupID, PostgresArray(events.map(\.message.storeID)), PostgresArray(events.map(\.message.messageID))])
        var new = Set(try inserted.map { Key(store: try $0.decode(String.self, at: 0) ?? "", message: try $0.decode(String.self, at: 1) ?? "") })
        return events.filter { new.remove(Key(store: $0.message.storeID, message: $0.message.messageID)) != nil }
    }

    /// A handler error as the dead letter's `dlq.message`: the SQLSTATE and primary message of a PostgreSQL error.
    private static func describe(_ error: any Error) -> String {
        if let error = error as? PostgresError {
            return "handler failed: \(error.sqlState.map { "SQLSTATE \($0): " } ?? "")\(error.message)"
        }
        return "handler failed: \(error)"
    }

    // MARK: - Publishing

    /// Publishes outbox rows in order and deletes each once delivered; what fails is sent again after a backoff,
    /// until everything is delivered.
    private func publish(_ rows: [Outbox.Row]) async throws {
        var pending = rows
        var attempt = 0
        while !pending.isEmpty {
            let results = try await producer.send(pending.map(\.message))
            var delivered: [Int64] = []
            var failed: [Outbox.Row] = []
            var lastError: KafkaError?
            for (row, result) in zip(pending, results) {
                switch result {
                case .success: delivered.append(row.id)
                case .failure(let error):
                    failed.append(row)
                    lastError = error
                }
            }
            do {
                let ids = delivered
                try await postgres.withConnection { try Outbox.delete(ids, connection: $0) }
            } catch {
                // The rows stay and are published again by the next relay: a duplicate with the same command id.
                logger.warning("delivered outbox rows not deleted", metadata: [LogKey.error: "\(error)"])
            }
            pending = failed
            guard !pending.isEmpty else { break }
            attempt += 1
            metrics.retries(stage: "publish")
            health.setBackoff(true)
            logger.warning("publishing failed; retrying", metadata: [LogKey.error: "\(lastError.map { "\($0)" } ?? "")", "messages": "\(pending.count)"])
            try await Task.sleep(for: configuration.backoff.delay(attempt: attempt - 1))
        }
        if attempt > 0 { health.setBackoff(false) }
    }

    /// Publishes what previous owners left in the outbox for partitions just assigned, oldest first, before any new
    /// message of theirs is processed.
    private func relayArrivals() async throws {
        let arrivals = offsets.takeArrivals()
        guard !arrivals.isEmpty else { return }
        do {
            try await relay(arrivals.filter { $0.topic == configuration.inputTopic }.map(\.partition))
        } catch {
            offsets.restoreArrivals(arrivals)
            throw error
        }
    }

    /// Publishes the outbox rows of `partitions` of the input topic, oldest first, until none is left.
    private func relay(_ partitions: [Int32]) async throws {
        guard !partitions.isEmpty else { return }
        let configuration = self.configuration
        while true {
            let rows = try await postgres.withConnection {
                try Outbox.pending(group: configuration.groupID, topic: configuration.inputTopic, partitions: partitions, limit: 1000, connection: $0)
            }
            guard !rows.isEmpty else { return }
            logger.info("relaying outbox rows", metadata: ["messages": "\(rows.count)"])
            try await publish(rows)
        }
    }
}

extension Dictionary where Key == TopicPartition, Value == Int64 {
    /// Keeps the lower offset per partition.
    mutating func mergeMinimum(_ other: [TopicPartition: Int64]) {
        merge(other) { Swift.min($0, $1) }
    }
}
