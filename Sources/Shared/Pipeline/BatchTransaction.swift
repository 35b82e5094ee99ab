import Foundation

/// What one decoded batch commits to PostgreSQL: de-duplicate on (store, messageId), apply the handler, write its
/// commands and the dead letters to the outbox, record the next offsets — in one transaction per group of partitions.
///
/// Control flow inside is by three errors, each caught one level up: ``IsolationNeeded`` (the handler failed on the
/// batch as a whole: run it again event by event), ``Pipeline/RetryBatch`` (events failed with attempts left: the
/// pipeline backs off and retries) and ``PartialCommit`` (some groups committed, another failed).
struct BatchTransaction: Sendable {
    /// The valid events, in partition order.
    var events: [InboundEvent<any Sendable>]
    /// The messages that failed to decode.
    var deadLetters: [DeadLetter]
    /// Messages still to decode, in partition order: each transaction decodes its own partitions' just before it
    /// begins, so that the first transaction starts after a third of the batch is decoded, not all of it, and the
    /// groups decode side by side.
    var undecoded: [KafkaMessage] = []
    /// The offsets to record per partition (after the batch).
    var nextOffsets: [TopicPartition: Int64]
    /// How many of the batch's messages PostgreSQL recorded as done already (``fenced(connection:)``).
    var alreadyDone = 0
    let handler: ErasedHandler
    /// Failed attempts so far, per message (an event reaching ``PipelineConfiguration/maxAttempts`` is dead-lettered).
    let attempts: [MessagePosition: Int]
    let configuration: PipelineConfiguration

    /// What a batch's transaction(s) committed.
    struct Committed: Sendable {
        var outbox: [Outbox.Row] = []
        var handled: [InboundEvent<any Sendable>] = []
        var duplicates = 0
        var deadLetters: [DeadLetter] = []
        var commands: [OutboundCommand] = []
        /// Messages that were no event for this worker (skipped and counted).
        var skipped = 0

        mutating func add(_ other: Committed) {
            outbox += other.outbox
            handled += other.handled
            duplicates += other.duplicates
            deadLetters += other.deadLetters
            commands += other.commands
            skipped += other.skipped
        }
    }

    /// Some of a batch's transactions committed and at least one failed with `error`. The committed partitions are
    /// done (effects, dead letters, offsets recorded; their outbox rows are relayed before the retry); the retry
    /// covers the other partitions only, so that nothing of the committed ones — dead letters included — is written
    /// twice.
    struct PartialCommit: Error {
        var committed: Committed
        var partitions: Set<TopicPartition>
        var error: any Error
    }

    /// The handler failed on the batch as a whole for a reason other than a retriable PostgreSQL error: the
    /// transaction is rolled back and run again with each event in its own savepoint, to find the one(s) that fail.
    struct IsolationNeeded: Error {}

    /// Commits the batch: its partitions split into up to ``PipelineConfiguration/transactionsPerBatch`` groups of
    /// about equal size, each group one transaction, run at once on separate connections. A partition is never split,
    /// so each partition's events stay in order within one transaction; PostgreSQL works on the groups in parallel
    /// instead of waiting for one statement at a time.
    ///
    /// - Throws: ``PartialCommit`` when one group failed and others committed: the caller's retry relays their outbox
    ///   rows first and finds their events applied (de-duplication), so nothing is applied or emitted twice.
    func commit(on postgres: PostgresClient) async throws -> Committed {
        let groups = Self.partitionGroups(
            nextOffsets.keys, weights: events.map(\.source.topicPartition) + undecoded.map(\.topicPartition), count: configuration.transactionsPerBatch)
        guard groups.count > 1 else { return try await run(on: postgres) }
        let outcomes = await withTaskGroup(of: TransactionOutcome.self) { group in
            for partitions in groups {
                let part = restricted(to: partitions)
                group.addTask {
                    do {
                        return TransactionOutcome(partitions: partitions, committed: try await part.run(on: postgres), error: nil)
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

    /// The part of the batch read from `partitions`.
    func restricted(to partitions: Set<TopicPartition>) -> BatchTransaction {
        var part = self
        part.events = events.filter { partitions.contains($0.source.topicPartition) }
        part.deadLetters = deadLetters.filter { partitions.contains($0.source.topicPartition) }
        part.undecoded = undecoded.filter { partitions.contains($0.topicPartition) }
        part.nextOffsets = nextOffsets.filter { partitions.contains($0.key) }
        return part
    }

    /// One transaction: the whole batch first, then — if the handler failed on it — each event isolated.
    private func run(on postgres: PostgresClient) async throws -> Committed {
        let (decoded, skipped) = self.decoded()
        var committed: Committed
        do {
            committed = try await postgres.withTransaction { try decoded.fenced(connection: $0).apply(isolating: false, connection: $0) }
        } catch is IsolationNeeded {
            committed = try await postgres.withTransaction { try decoded.fenced(connection: $0).apply(isolating: true, connection: $0) }
        }
        committed.skipped += skipped
        return committed
    }

    /// This part without the messages PostgreSQL records as done for the group: those below a partition's recorded
    /// offset. They come back when a commit's outcome was lost (PostgreSQL restarting during the COMMIT: the retry
    /// finds it done), or when a partition started from Kafka's committed offsets because PostgreSQL did not answer at
    /// assignment. De-duplication would catch their events, but not a malformed message, which has no messageId: it
    /// would be dead-lettered twice. The offsets' rows stay locked to the end of the transaction.
    private func fenced(connection: PostgresConnection) throws -> BatchTransaction {
        let recorded = try OffsetStore.read(groupID: configuration.groupID, partitions: nextOffsets.keys.sorted(), locking: true, connection: connection)
        func done(_ message: KafkaMessage) -> Bool { message.offset < recorded[message.topicPartition] ?? 0 }
        guard events.contains(where: { done($0.source) }) || deadLetters.contains(where: { done($0.source) }) else { return self }
        var part = self
        part.events.removeAll { done($0.source) }
        part.deadLetters.removeAll { done($0.source) }
        part.alreadyDone = events.count + deadLetters.count - part.events.count - part.deadLetters.count
        return part
    }

    /// This part with ``undecoded`` decoded into ``events`` and ``deadLetters`` (a message that is not JSON, too
    /// large, or refused by the handler's `decode`), in partition order, and how many messages were no event for this
    /// worker (skipped).
    private func decoded() -> (BatchTransaction, skipped: Int) {
        var part = self
        part.undecoded = []
        var skipped = 0
        for message in undecoded {
            do {
                switch try SegmentMessage.decode(message.value, sizeLimit: configuration.maxMessageBytes) {
                case .event(let event):
                    guard configuration.acceptsStore(event.storeID) else {
                        let failure = DecodeFailure(.schemaViolation, "context.storeId names a store the settings file does not (unknown_stores: dead_letter)")
                        part.deadLetters.append(DeadLetter(source: message, failure: failure, messageID: event.messageID))
                        continue
                    }
                    do {
                        part.events.append(InboundEvent(message: event, event: try handler.decode(event), source: message))
                    } catch {
                        part.deadLetters.append(DeadLetter(source: message, failure: error, messageID: event.messageID))
                    }
                case .skipped: skipped += 1
                }
            } catch {
                part.deadLetters.append(DeadLetter(source: message, failure: error))
            }
        }
        return (part, skipped)
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

    /// The transaction's work: de-duplicate, apply, write the outbox, record offsets.
    ///
    /// The handler first gets the whole batch with no savepoint (two round trips fewer per batch); when it fails —
    /// or the de-duplication itself refuses a value (a data error: SQLSTATE class 22, 23 or 54) — ``IsolationNeeded``
    /// rolls everything back and the batch runs again `isolating` each event: its de-duplication and its handling in a
    /// savepoint of its own, so that what one message carries fails that message alone.
    private func apply(isolating: Bool, connection: PostgresConnection) throws -> Committed {
        var deadLetters = deadLetters
        var commands: [OutboundCommand] = []
        var handled: [InboundEvent<any Sendable>] = []
        var duplicates = alreadyDone  // what PostgreSQL had done already counts as duplicates
        // Events of an erased address: de-duplicated (a replay of one is a duplicate), never handled.
        var refused = 0
        let limit = configuration.producerMessageLimit
        if !isolating {
            do {
                let fresh = try Self.deduplicate(events, groupID: configuration.groupID, connection: connection)
                duplicates += events.count - fresh.count
                handled = try withoutErasedAddresses(fresh, connection: connection)
                refused = fresh.count - handled.count
                commands = try handler.handle(handled, connection)
            } catch let error as PostgresError where error.isRetriable {
                throw error
            } catch {
                throw IsolationNeeded()
            }
            // A command the producer would refuse: find its event, which is dead-lettered (below).
            if commands.contains(where: { $0.outbound.wireSize > limit }) { throw IsolationNeeded() }
        } else {
            var retry: [MessagePosition] = []
            for event in events {
                try connection.execute("SAVEPOINT rapport_event")
                do {
                    // Inside the savepoint: rolled back with the event's effects when it fails, so that a replay of
                    // its dead letter (`dlq replay`) finds it new.
                    guard try !Self.deduplicate([event], groupID: configuration.groupID, connection: connection).isEmpty else {
                        try connection.execute("RELEASE SAVEPOINT rapport_event")
                        duplicates += 1
                        continue
                    }
                    guard try !withoutErasedAddresses([event], connection: connection).isEmpty else {
                        try connection.execute("RELEASE SAVEPOINT rapport_event")
                        refused += 1
                        continue
                    }
                    let caused = try handler.handle([event], connection)
                    if let heavy = caused.first(where: { $0.outbound.wireSize > limit }) {
                        // Permanent for this event: the same input always makes the same command. Not retried.
                        try connection.execute("ROLLBACK TO SAVEPOINT rapport_event")
                        let reason =
                            "command \(heavy.name) for \(heavy.topic) is \(heavy.outbound.wireSize) bytes, over the producer's message.max.bytes (\(limit))"
                        deadLetters.append(
                            DeadLetter(source: event.source, failure: DecodeFailure(.handlerFailure, reason), messageID: event.message.messageID))
                        continue
                    }
                    commands += caused
                    try connection.execute("RELEASE SAVEPOINT rapport_event")
                    handled.append(event)
                } catch let error as PostgresError where error.isRetriable {
                    throw error
                } catch {
                    try connection.execute("ROLLBACK TO SAVEPOINT rapport_event")
                    // A value PostgreSQL refuses is refused the same way every time: dead-lettered at once.
                    let permanent = (error as? PostgresError)?.isDataError ?? false
                    if permanent || attempts[event.source.position, default: 0] + 1 >= configuration.maxAttempts {
                        deadLetters.append(
                            DeadLetter(source: event.source, failure: DecodeFailure(.handlerFailure, Self.describe(error)), messageID: event.message.messageID))
                    } else {
                        retry.append(event.source.position)
                    }
                }
            }
            if !retry.isEmpty { throw Pipeline.RetryBatch(failed: retry) }
        }
        let failedAt = Date()
        var entries = deadLetters.map { deadLetter in
            Outbox.Entry(
                source: deadLetter.source.topicPartition, sourceOffset: deadLetter.source.offset,
                message: deadLetter.outbound(topic: configuration.deadLetterTopic, worker: configuration.worker, failedAt: failedAt, limit: limit),
                commandID: nil)
        }
        // A command's row belongs to the partition of the event that caused it: that partition's next owner relays it,
        // before it processes anything newer from the same shopper. A handler that did not say which event caused a
        // command gets its batch's first partition.
        let fallback = handled.first?.source.topicPartition ?? nextOffsets.keys.sorted().first ?? TopicPartition(topic: configuration.inputTopic, partition: 0)
        entries += commands.map { command in
            Outbox.Entry(
                source: command.source?.topicPartition ?? fallback, sourceOffset: command.source?.offset, message: command.outbound, commandID: command.id)
        }
        let ids = try Outbox.write(entries, group: configuration.groupID, connection: connection)
        try OffsetStore.record(nextOffsets, groupID: configuration.groupID, connection: connection)
        return Committed(
            outbox: zip(ids, entries).map { Outbox.Row(id: $0, entry: $1) }, handled: handled,
            duplicates: duplicates, deadLetters: deadLetters, commands: commands, skipped: refused)
    }

    /// `events` less those whose address was erased in a store that keeps erased addresses' hashes
    /// (``PipelineConfiguration/erasedAddresses``): no worker applies them.
    private func withoutErasedAddresses(_ events: [InboundEvent<any Sendable>], connection: PostgresConnection) throws -> [InboundEvent<any Sendable>] {
        guard let erasedAddresses = configuration.erasedAddresses, !events.isEmpty else { return events }
        return try erasedAddresses.withoutErased(events, connection: connection)
    }

    /// An event's identity within the group: the contract's de-duplication key.
    private struct DeduplicationKey: Hashable {
        var store: String
        var message: String
    }

    /// The events whose (store, messageId) this group has not applied before, first occurrence only; records them.
    private static func deduplicate(_ events: [InboundEvent<any Sendable>], groupID: String, connection: PostgresConnection) throws -> [InboundEvent<
        any Sendable
    >] {
        guard !events.isEmpty else { return [] }
        let (stores, messages) = (PostgresArray(events.map(\.message.storeID)), PostgresArray(events.map(\.message.messageID)))
        let inserted = try connection.query(
            """
            INSERT INTO rapport_processed_messages (group_id, store_id, message_id)
            SELECT \(groupID), u.store_id, u.message_id FROM unnest(\(stores)::text[], \(messages)::text[]) AS u(store_id, message_id)
            ON CONFLICT DO NOTHING
            RETURNING store_id, message_id
            """)
        var new = Set(try inserted.decode((String, String).self).map { DeduplicationKey(store: $0, message: $1) })
        return events.filter { new.remove(DeduplicationKey(store: $0.message.storeID, message: $0.message.messageID)) != nil }
    }

    /// A handler error as the dead letter's `dlq.message`: the SQLSTATE and primary message of a PostgreSQL error.
    private static func describe(_ error: any Error) -> String {
        if let error = error as? PostgresError {
            return "handler failed: \(error.sqlState.map { "SQLSTATE \($0): " } ?? "")\(error.message)"
        }
        return "handler failed: \(error)"
    }
}
