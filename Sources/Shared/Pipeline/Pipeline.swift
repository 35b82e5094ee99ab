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
    let configuration: PipelineConfiguration
    let consumer: KafkaConsumer
    let offsets: OffsetStore
    let producer: KafkaProducer
    let postgres: PostgresClient
    private let handler: ErasedHandler?
    let health: WorkerHealth
    let metrics: PipelineMetrics
    let logger: Logger

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
        self.handler = handler.map { ErasedHandler($0) }
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

    private func processWithRetry(_ batch: [KafkaMessage], handler: ErasedHandler) async throws {
        var batch = batch
        var attempts: [MessageKey: Int] = [:]
        var retry = 0
        var rewind: [TopicPartition: Int64] = [:]
        // Partitions whose outbox rows are owed before the retry: a failed attempt may have committed in part (one of
        // its transactions succeeded while another failed) or after all (PostgreSQL went away during COMMIT).
        var owed = Set<Int32>()
        while true {
            do {
                if !owed.isEmpty {
                    // Publish whatever these partitions have left, oldest first; the retry then finds those events
                    // applied and emits nothing twice.
                    try await relay(owed.sorted())
                    owed = []
                }
                try await process(batch, handler: handler, attempts: attempts)
                if retry > 0 {
                    // Read on exactly after this batch, and again from anything a poll returned while paused.
                    try await resume(rewinding: batch.nextOffsets.merging(rewind) { afterBatch, _ in afterBatch })
                    logger.info("batch committed after retrying", metadata: ["retries": "\(retry)"])
                }
                return
            } catch {
                var error = error
                if let partial = error as? PartialCommit {
                    // Those partitions are done; only the others are tried again.
                    owed.formUnion(partial.partitions.map(\.partition))
                    batch.removeAll { partial.partitions.contains($0.topicPartition) }
                    error = partial.error
                }
                owed.formUnion(batch.map(\.topicPartition.partition))
                if let error = error as? RetryBatch {
                    for key in error.failed { attempts[key, default: 0] += 1 }
                    logger.warning("events failed in the handler; retrying the batch", metadata: ["events": "\(error.failed.count)"])
                } else if Self.isTransient(error) {
                    logger.warning("batch failed; retrying", metadata: [LogKey.error: "\(error)"])
                } else {
                    throw error
                }
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

    static func isTransient(_ error: any Error) -> Bool {
        switch error {
        case let error as PostgresError: error.isRetriable
        case let error as KafkaError: error.isRetriable && !error.isFatal
        default: false
        }
    }

    /// Decodes, applies and commits one batch, then publishes its outbox rows and commits its offsets.
    private func process(_ batch: [KafkaMessage], handler: ErasedHandler, attempts: [MessageKey: Int]) async throws {
        let started = ContinuousClock.now
        var events: [InboundEvent<any Sendable>] = []
        var deadLetters: [DeadLetter] = []
        var skipped: [TopicPartition] = []
        for message in batch {
            do {
                switch try SegmentMessage.decode(message.value, sizeLimit: configuration.maxMessageBytes) {
                case .event(let event):
                    do {
                        events.append(InboundEvent(message: event, event: try handler.decode(event), source: message))
                    } catch {
                        deadLetters.append(DeadLetter(source: message, failure: error, messageID: event.messageID))
                    }
                case .skipped: skipped.append(message.topicPartition)
                }
            } catch {
                deadLetters.append(DeadLetter(source: message, failure: error))
            }
        }
        let decodedAt = ContinuousClock.now
        let nextOffsets = batch.nextOffsets
        let committed: Committed
        do {
            committed = try await commit(events: events, deadLetters: deadLetters, nextOffsets: nextOffsets, handler: handler, attempts: attempts)
        } catch let partial as PartialCommit {
            // What did commit is counted now; its commands go out with the relay before the retry.
            let size = batch.count { partial.partitions.contains($0.topicPartition) }
            record(partial.committed, size: size, skipped: skipped.count { partial.partitions.contains($0) }, duration: ContinuousClock.now - started)
            throw partial
        }
        let committedAt = ContinuousClock.now
        let published = try await publish(committed.outbox)
        let publishedAt = ContinuousClock.now
        do {
            // Kafka's offsets never pass a message whose outbox rows are still waiting (shutdown mid-publish).
            if published { try await consumer.commit(nextOffsets) }
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
        record(committed, size: batch.count, skipped: skipped.count, duration: ContinuousClock.now - started)
    }

    /// Metrics and logs for what a batch (or part of one) committed.
    private func record(_ committed: Committed, size: Int, skipped: Int, duration: Duration) {
        metrics.batch(
            size: size, duration: duration, handled: committed.handled, duplicates: committed.duplicates,
            skipped: skipped, deadLetters: committed.deadLetters, commands: committed.commands)
        for deadLetter in committed.deadLetters {
            var metadata: Logger.Metadata = [
                LogKey.kafkaTopic: "\(deadLetter.source.topicPartition.topic)", LogKey.kafkaPartition: "\(deadLetter.source.topicPartition.partition)",
                LogKey.kafkaOffset: "\(deadLetter.source.offset)", "dlq.reason": "\(deadLetter.failure.reason.rawValue)",
            ]
            if let messageID = deadLetter.messageID { metadata[LogKey.messageID] = "\(messageID)" }
            logger.warning("message dead-lettered", metadata: metadata)
        }
    }

    /// What a batch's transaction(s) committed.
    private struct Committed: Sendable {
        var outbox: [Outbox.Row] = []
        var handled: [InboundEvent<any Sendable>] = []
        var duplicates = 0
        var deadLetters: [DeadLetter] = []
        var commands: [OutboundCommand] = []

        mutating func add(_ other: Committed) {
            outbox += other.outbox
            handled += other.handled
            duplicates += other.duplicates
            deadLetters += other.deadLetters
            commands += other.commands
        }
    }

    /// Commits a decoded batch: its partitions split into up to ``PipelineConfiguration/transactionsPerBatch``
    /// groups of about equal size, each group one transaction, run at once on separate connections. A partition is
    /// never split, so each partition's events stay in order within one transaction; PostgreSQL works on the groups
    /// in parallel instead of waiting for one statement at a time.
    ///
    /// When one group fails, the others may have committed: the caller's retry relays their outbox rows first and
    /// finds their events applied (de-duplication), so nothing is applied or emitted twice.
    private func commit(
        events: [InboundEvent<any Sendable>], deadLetters: [DeadLetter], nextOffsets: [TopicPartition: Int64], handler: ErasedHandler,
        attempts: [MessageKey: Int]
    ) async throws -> Committed {
        let configuration = self.configuration
        let postgres = self.postgres
        let groups = Self.partitionGroups(nextOffsets.keys, weights: events.map(\.source.topicPartition), count: configuration.transactionsPerBatch)
        @Sendable func transaction(_ partitions: Set<TopicPartition>?) async throws -> Committed {
            let events = partitions.map { partitions in events.filter { partitions.contains($0.source.topicPartition) } } ?? events
            let deadLetters = partitions.map { partitions in deadLetters.filter { partitions.contains($0.source.topicPartition) } } ?? deadLetters
            let nextOffsets = partitions.map { partitions in nextOffsets.filter { partitions.contains($0.key) } } ?? nextOffsets
            func attempt(isolating: Bool) async throws -> Committed {
                try await postgres.withTransaction { connection in
                    try Self.apply(
                        events: events, deadLetters: deadLetters, nextOffsets: nextOffsets, handler: handler, attempts: attempts,
                        isolating: isolating, configuration: configuration, connection: connection)
                }
            }
            do {
                return try await attempt(isolating: false)
            } catch is IsolationNeeded {
                return try await attempt(isolating: true)
            }
        }
        guard groups.count > 1 else { return try await transaction(nil) }
        let outcomes = await withTaskGroup(of: TransactionOutcome.self) { group in
            for partitions in groups {
                group.addTask {
                    do {
                        return TransactionOutcome(partitions: partitions, committed: try await transaction(partitions), error: nil)
                    } catch {
                        return TransactionOutcome(partitions: partitions, committed: nil, error: error)
                    }
                }
            }
            // Every transaction is awaited, even after one fails: none may still be running when the batch retries.
            var outcomes: [TransactionOutcome] = []
            while let outcome = await group.next() { outcomes.append(outcome) }
            return outcomes
        }
        var committed = Committed()
        var committedPartitions = Set<TopicPartition>()
        var firstError: (any Error)?
        for outcome in outcomes {
            if let part = outcome.committed {
                committed.add(part)
                committedPartitions.formUnion(outcome.partitions)
            } else {
                firstError = firstError ?? outcome.error
            }
        }
        if let firstError {
            guard !committedPartitions.isEmpty else { throw firstError }
            throw PartialCommit(committed: committed, partitions: committedPartitions, error: firstError)
        }
        return committed
    }

    /// How one of a batch's transactions ended. A class, so that the task group hands back one reference per child:
    /// with a `(Set, Result)` tuple as the child result, a release build crashed once inside the runtime's copy of a
    /// child's result (`tuple_initializeWithCopy`, a null retain); not reproduced since this change.
    private final class TransactionOutcome: Sendable {
        let partitions: Set<TopicPartition>
        let committed: Committed?
        let error: (any Error)?

        init(partitions: Set<TopicPartition>, committed: Committed?, error: (any Error)?) {
            self.partitions = partitions
            self.committed = committed
            self.error = error
        }
    }

    /// Some of a batch's transactions committed and at least one failed with `error`. The committed partitions are
    /// done (effects, dead letters, offsets recorded; their outbox rows are relayed before the retry); the retry
    /// covers the other partitions only, so that nothing of the committed ones — dead letters included — is written
    /// twice.
    private struct PartialCommit: Error {
        var committed: Committed
        var partitions: Set<TopicPartition>
        var error: any Error
    }

    /// `partitions` split into at most `count` groups, balancing how many of `weights` (one entry per event) each
    /// group gets: the busiest partition first, each into the lightest group so far.
    static func partitionGroups(_ partitions: some Collection<TopicPartition>, weights: [TopicPartition], count: Int) -> [Set<TopicPartition>] {
        guard count > 1, partitions.count > 1 else { return [Set(partitions)] }
        var load: [TopicPartition: Int] = [:]
        for partition in weights { load[partition, default: 0] += 1 }
        var groups = Array(repeating: (events: 0, partitions: Set<TopicPartition>()), count: min(count, partitions.count))
        for partition in partitions.sorted(by: { (load[$0] ?? 0, $1) > (load[$1] ?? 0, $0) }) {
            let lightest = groups.indices.min { groups[$0].events < groups[$1].events } ?? 0
            groups[lightest].events += load[partition] ?? 0
            groups[lightest].partitions.insert(partition)
        }
        return groups.map(\.partitions).filter { !$0.isEmpty }
    }

    /// The handler failed on the batch as a whole for a reason other than a retriable PostgreSQL error: the
    /// transaction is rolled back and run again with each event in its own savepoint, to find the one(s) that fail.
    private struct IsolationNeeded: Error {}

    /// The batch's transaction: de-duplicate, apply, write the outbox, record offsets.
    ///
    /// The handler first gets the whole batch with no savepoint (two round trips fewer per batch); when it fails,
    /// ``IsolationNeeded`` rolls everything back and the batch runs again `isolating` each event.
    private static func apply(
        events: [InboundEvent<any Sendable>], deadLetters: [DeadLetter], nextOffsets: [TopicPartition: Int64], handler: ErasedHandler,
        attempts: [MessageKey: Int], isolating: Bool, configuration: PipelineConfiguration, connection: PostgresConnection
    ) throws -> Committed {
        let fresh = try deduplicate(events, groupID: configuration.groupID, connection: connection)
        var deadLetters = deadLetters
        var commands: [OutboundCommand] = []
        var handled = fresh
        let limit = configuration.producerMessageLimit
        if !isolating {
            do {
                commands = try handler.handle(fresh, connection)
            } catch let error as PostgresError where error.isRetriable {
                throw error
            } catch {
                throw IsolationNeeded()
            }
            // A command the producer would refuse: find its event, which is dead-lettered (below).
            if commands.contains(where: { $0.outbound.wireSize > limit }) { throw IsolationNeeded() }
        } else {
            handled = []
            var retry: [MessageKey] = []
            for event in fresh {
                let key = MessageKey(topicPartition: event.source.topicPartition, offset: event.source.offset)
                try connection.execute("SAVEPOINT rapport_event")
                do {
                    let caused = try handler.handle([event], connection)
                    if let heavy = caused.first(where: { $0.outbound.wireSize > limit }) {
                        // Permanent for this event: the same input always makes the same command. Not retried.
                        try connection.execute("ROLLBACK TO SAVEPOINT rapport_event")
                        let reason = "command \(heavy.name) for \(heavy.topic) is \(heavy.outbound.wireSize) bytes, over the producer's message.max.bytes (\(limit))"
                        deadLetters.append(DeadLetter(source: event.source, failure: DecodeFailure(.handlerFailure, reason), messageID: event.message.messageID))
                        continue
                    }
                    commands += caused
                    try connection.execute("RELEASE SAVEPOINT rapport_event")
                    handled.append(event)
                } catch let error as PostgresError where error.isRetriable {
                    throw error
                } catch {
                    try connection.execute("ROLLBACK TO SAVEPOINT rapport_event")
                    if attempts[key, default: 0] + 1 >= configuration.maxAttempts {
                        deadLetters.append(
                            DeadLetter(source: event.source, failure: DecodeFailure(.handlerFailure, Self.describe(error)), messageID: event.message.messageID))
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
                source: deadLetter.source.topicPartition, sourceOffset: deadLetter.source.offset,
                message: deadLetter.outbound(topic: configuration.deadLetterTopic, worker: configuration.worker, failedAt: failedAt, limit: limit),
                commandID: nil)
        }
        // A command's row belongs to the partition of the event that caused it: that partition's next owner relays it,
        // before it processes anything newer from the same shopper.
        let sources = Dictionary(handled.map { (CausationKey(store: $0.message.storeID, message: $0.message.messageID), $0.source) }) {
            first, _ in first
        }
        let fallback = handled.first?.source.topicPartition ?? nextOffsets.keys.sorted().first ?? TopicPartition(topic: configuration.inputTopic, partition: 0)
        entries += commands.map { command in
            let source = sources[CausationKey(store: command.storeID, message: command.causationID)]
            return Outbox.Entry(source: source?.topicPartition ?? fallback, sourceOffset: source?.offset, message: command.outbound, commandID: command.id)
        }
        let ids = try Outbox.write(entries, group: configuration.groupID, connection: connection)
        try OffsetStore.record(nextOffsets, groupID: configuration.groupID, connection: connection)
        return Committed(
            outbox: zip(ids, entries).map { Outbox.Row(id: $0, entry: $1) }, handled: handled,
            duplicates: events.count - fresh.count, deadLetters: deadLetters, commands: commands)
    }

    /// An event's identity within the group: the contract's de-duplication key.
    private struct CausationKey: Hashable {
        var store: String
        var message: String
    }

    /// The events whose (store, messageId) this group has not applied before, first occurrence only; records them.
    private static func deduplicate(_ events: [InboundEvent<any Sendable>], groupID: String, connection: PostgresConnection) throws -> [InboundEvent<any Sendable>] {
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
}

extension Dictionary where Key == TopicPartition, Value == Int64 {
    /// Keeps the lower offset per partition.
    mutating func mergeMinimum(_ other: [TopicPartition: Int64]) {
        merge(other) { Swift.min($0, $1) }
    }
}
