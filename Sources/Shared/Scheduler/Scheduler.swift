import Foundation
import Logging
import Metrics
import Synchronization

/// Emits a worker's scheduled steps when they fall due: every `interval` it claims due steps (`FOR UPDATE SKIP
/// LOCKED`, a batch at a time) and, in one transaction, asks the worker's ``StepHandler`` to decide each as of now
/// (the conversation policy at the moment of sending, exit conditions), writes the commands to the outbox, records
/// the decisions and moves each step to its new state. Then it publishes its outbox rows and deletes what was
/// delivered, through the pipeline's ``OutboxPublisher``: a command the broker refuses for good is dead-lettered
/// (`handler_failure`, on the worker's dead-letter topic) or parked, as the pipeline's own commands are.
///
/// Any number of replicas emit each step once: a step is claimed under a row lock and settled in the transaction
/// that writes its command. A crash between that commit and the publish loses nothing: the outbox rows stay, under a
/// lease (`lease_until`) so that replicas never publish one row at the same time, and any replica relays them once the
/// lease has run out — a command that then reaches the wire twice carries one `command_id` both times.
///
/// Metrics: `rapport_scheduler_steps_due`, `rapport_scheduler_lag_seconds` (now − the oldest due step; both counted
/// every 5 s),
/// `rapport_scheduler_steps_claimed_total`, `rapport_scheduler_steps_total{outcome}`; and the publisher's
/// `rapport_publish_failures_total{topic,disposition}` and `rapport_outbox_parked_total{topic}`.
public final class Scheduler: PeriodicJob {
    /// Where the scheduler's outbox rows say they came from: no input partition.
    public static let source = TopicPartition(topic: "@scheduler", partition: 0)

    private let postgres: PostgresClient
    private let publisher: OutboxPublisher
    private let groupID: String
    private let handler: any StepHandler
    private let clock: @Sendable () -> Date
    public let interval: Duration
    private let batchSize: Int
    private let lease: Duration
    private let logger: Logger

    /// - Parameters:
    ///   - pipeline: The worker's pipeline configuration: its consumer group owns the steps its handler scheduled, and
    ///     a command refused for good becomes a dead letter on its dead-letter topic, in its name, cut to its
    ///     producer's limit — as the pipeline's own commands do.
    ///   - clock: What "now" is (injectable: tests move time by hand). Default: the system clock.
    ///   - interval: How long an idle scheduler waits before looking again. Default: 1 s.
    ///   - batchSize: Steps claimed per transaction. Default: 500.
    ///   - lease: How long a published-but-not-yet-deleted outbox row is left to its publisher. Default: 60 s.
    public init(
        postgres: PostgresClient, producer: KafkaProducer, pipeline: PipelineConfiguration, handler: any StepHandler,
        clock: @escaping @Sendable () -> Date = { Date() }, interval: Duration = .seconds(1), batchSize: Int = 500, lease: Duration = .seconds(60),
        logger: Logger
    ) {
        self.postgres = postgres
        self.publisher = OutboxPublisher(configuration: pipeline, producer: producer, postgres: postgres, logger: logger)
        self.groupID = pipeline.groupID
        self.handler = handler
        self.clock = clock
        self.interval = interval
        self.batchSize = batchSize
        self.lease = lease
        self.logger = logger
    }

    public var name: String { "scheduler" }
    public var failureMessage: String { "scheduler failed; retrying with backoff" }

    /// When the due backlog was last counted.
    private let backlogRecorded = Mutex<ContinuousClock.Instant?>(nil)

    /// A round: the backlog counted when it is time, then a ``tick()``; more at once while a full batch was claimed.
    public func round() async throws -> PeriodicRound {
        if backlogRecorded.withLock({ $0.map { ContinuousClock.now - $0 >= Self.backlogInterval } ?? true }) {
            try await recordBacklog()
            backlogRecorded.withLock { $0 = ContinuousClock.now }
        }
        return try await tick() ? .more : .done
    }

    /// One round: claims and decides one batch of due steps, publishes their commands, then relays what earlier
    /// rounds (this replica's or a crashed one's) left in the outbox past its lease.
    /// - Returns: Whether there may be more to do at once (a full batch was claimed).
    @discardableResult
    public func tick() async throws -> Bool {
        let (claimed, rows) = try await emitDue()
        try await publish(rows)
        try await relay()
        return claimed >= batchSize
    }

    /// How often the due backlog is counted for the metrics: counting reads every due step (a range of the due index),
    /// a cost that grows with the backlog, so it is not paid in every claim's transaction (it was, and cost the
    /// scheduler's throughput most when it was behind).
    static let backlogInterval: Duration = .seconds(5)

    /// Records the due backlog: `rapport_scheduler_steps_due` and `rapport_scheduler_lag_seconds`.
    public func recordBacklog() async throws {
        let (groupID, now) = (self.groupID, clock())
        let due = try await postgres.withConnection { try StepStore.due(group: groupID, now: now, connection: $0) }
        Gauge(label: "rapport_scheduler_steps_due").record(due.count)
        Gauge(label: "rapport_scheduler_lag_seconds").record(due.oldest.map { max(0, now.timeIntervalSince($0)) } ?? 0)
    }

    /// Claims, decides and settles one batch of due steps in one transaction, the commands written to the outbox
    /// under this scheduler's lease. Nothing is published: ``tick()`` publishes right after (a test calls this alone
    /// to stop where a crash would).
    /// - Returns: How many steps were claimed, and the outbox rows written.
    @discardableResult
    public func emitDue() async throws -> (claimed: Int, rows: [Outbox.Row]) {
        let now = clock()
        let (groupID, batchSize, handler, lease) = (self.groupID, self.batchSize, self.handler, self.lease)
        let (claimed, rows, outcomes) = try await postgres.withTransaction { connection in
            let steps = try StepStore.claim(group: groupID, now: now, limit: batchSize, connection: connection)
            guard !steps.isEmpty else { return (0, [Outbox.Row](), [String: Int]()) }
            let outcomes = try handler.decide(steps, now: now, connection: connection)
            guard outcomes.count == steps.count else {
                throw PostgresError(code: .unexpected, message: "the step handler decided \(outcomes.count) of \(steps.count) steps")
            }
            let entries = outcomes.flatMap { outcome -> [Outbox.Entry] in
                guard case .sent(let commands) = outcome.kind else { return [] }
                return commands.map { Outbox.Entry(source: Scheduler.source, sourceOffset: nil, message: $0.outbound, commandID: $0.id) }
            }
            let ids = try Outbox.write(entries, group: groupID, connection: connection)
            if !ids.isEmpty {
                // This scheduler publishes them right after the commit; other replicas wait out the lease.
                try connection.execute(
                    "UPDATE rapport_outbox SET lease_until = now() + \("\(Int(lease.seconds)) seconds")::interval WHERE id = ANY(\(PostgresArray(ids))::bigint[])"
                )
            }
            try StepStore.settle(steps, outcomes, connection: connection)
            try ContactDecisionLog.record(outcomes.flatMap(\.decisions), connection: connection)
            let rows = zip(ids, entries).map { Outbox.Row(id: $0, entry: $1) }
            return (steps.count, rows, Dictionary(grouping: outcomes, by: \.name).mapValues(\.count))
        }
        if claimed > 0 {
            Counter(label: "rapport_scheduler_steps_claimed_total").increment(by: claimed)
            for (outcome, count) in outcomes { Counter(label: "rapport_scheduler_steps_total", dimensions: [("outcome", outcome)]).increment(by: count) }
            logger.debug("scheduled steps decided", metadata: [LogKey.messages: "\(claimed)"])
        }
        return (claimed, rows)
    }

    /// Publishes outbox rows whose lease this scheduler holds and deletes the delivered ones, settling each failure as
    /// the pipeline does (``OutboxPublisher/settle(_:_:)``): a row refused for good goes again at once as its
    /// replacement (a command as a `handler_failure` dead letter) or, when no form of it can be published, is parked;
    /// a fatal error is thrown (the worker exits; the outbox keeps the rows). A passing failure, or a topic the worker
    /// cannot write to, leaves the row under its lease: the scheduler does not wait in place as the pipeline does (it
    /// holds no partitions), and whichever replica relays once the lease has run out sends it again.
    /// - Returns: Whether nothing was left for a relay: every row delivered, dead-lettered or parked.
    @discardableResult
    func publish(_ rows: [Outbox.Row]) async throws -> Bool {
        var pending = rows
        var settled = true
        while !pending.isEmpty {
            let round = try await publisher.settle(pending, try await publisher.send(pending))
            let delivered = round.delivered
            if !delivered.isEmpty { try await postgres.withConnection { try Outbox.delete(delivered, connection: $0) } }
            if round.wait {
                settled = false
                let error = round.blocked?.error ?? round.lastError
                logger.warning(
                    "scheduled commands not published; relayed again once their lease runs out",
                    metadata: [LogKey.error: "\(error.map { "\($0)" } ?? "")", LogKey.messages: "\(round.again.count { !$0.replacement })"])
            }
            pending = round.again.filter(\.replacement).map(\.row)
        }
        return settled
    }

    /// Relays the outbox rows of scheduled steps whose lease has run out (a publish that failed, a crash between the
    /// commit and the publish), oldest first, taking their lease first so that one replica relays each.
    public func relay() async throws {
        let (groupID, lease, limit) = (self.groupID, self.lease, self.batchSize)
        while !Task.isShuttingDownGracefully {
            let rows = try await postgres.withTransaction { connection in
                try Outbox.leaseScheduled(group: groupID, lease: lease, limit: limit, connection: connection)
            }
            guard !rows.isEmpty else { return }
            logger.info("relaying scheduled commands left in the outbox", metadata: [LogKey.messages: "\(rows.count)"])
            guard try await publish(rows), rows.count == limit else { return }
        }
    }
}
