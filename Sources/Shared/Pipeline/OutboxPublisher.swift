import Foundation
import Logging
import Metrics

/// Sends outbox rows and settles what each send did, for everything that publishes the outbox: the pipeline, which
/// sends again in place (backing off while it polls, its partitions paused), and the scheduler, which leaves a row
/// that failed under its lease for a later relay. Both follow one policy — the error classes of
/// ``KafkaError/publishDisposition``, the same copy in place of a row refused for good, the same parking, the same
/// metrics — so that a command the broker refuses for good is dead-lettered whoever published it, and counted.
struct OutboxPublisher: Sendable {
    /// What one send did, row by row.
    struct Round: Sendable {
        /// The delivered rows' ids, to delete.
        var delivered: [Int64] = []
        /// What to send again, in the rows' order: a row as it was after a passing failure or while the worker cannot
        /// write to its topic (`replacement` false: sent again after a backoff), or the copy standing in for a row
        /// refused for good (`replacement` true, the row's id: sent at once, a different message and not a retry).
        var again: [(row: Outbox.Row, replacement: Bool)] = []
        /// The last passing failure, for the retry's log line.
        var lastError: KafkaError?
        /// The last topic the worker cannot write to (a topic missing, authorization refused), with the error.
        var blocked: (topic: String, error: KafkaError)?

        /// Whether some row failed as it was, and must wait out a backoff (or a lease) before it is sent again.
        var wait: Bool { lastError != nil || blocked != nil }
    }

    let producer: KafkaProducer
    let postgres: PostgresClient
    /// Where a refused command goes as a dead letter: the worker's own dead-letter topic.
    let deadLetterTopic: String
    /// The producer's `message.max.bytes`: a dead letter carrying a refused command is cut down to it.
    let producerMessageLimit: Int
    /// The worker's name, written in a dead letter's `dlq.worker`.
    let worker: String
    let metrics: PipelineMetrics
    let logger: Logger

    /// A publisher for the worker `configuration` describes.
    init(configuration: PipelineConfiguration, producer: KafkaProducer, postgres: PostgresClient, logger: Logger) {
        self.producer = producer
        self.postgres = postgres
        deadLetterTopic = configuration.deadLetterTopic
        producerMessageLimit = configuration.producerMessageLimit
        worker = configuration.worker
        metrics = PipelineMetrics(topic: configuration.inputTopic)
        self.logger = logger
    }

    /// Sends `rows`' messages in one go and waits for their delivery reports.
    /// - Returns: One result per row, in order.
    /// - Throws: ``KafkaError`` when the producer is unusable (fatal or closed).
    func send(_ rows: [Outbox.Row]) async throws -> [Result<KafkaDeliveryReport, KafkaError>] {
        try await producer.send(rows.map(\.message))
    }

    /// Settles one send of `rows` from its `results` (one per row, in order): each failure is counted in
    /// `rapport_publish_failures_total` by its class; a row refused for good is replaced by a smaller copy
    /// (``replacement(for:refusedWith:)``) or, when it has none, parked. Nothing is deleted: the caller deletes
    /// ``Round/delivered`` (the pipeline's first attempt may have done so already).
    /// - Throws: A fatal ``KafkaError`` as soon as one is met (the rows before it settled): the producer must be
    ///   recreated, and the outbox keeps what was not delivered. ``PostgresError`` when a row cannot be parked.
    func settle(_ rows: [Outbox.Row], _ results: [Result<KafkaDeliveryReport, KafkaError>]) async throws -> Round {
        var round = Round()
        for (row, result) in zip(rows, results) {
            guard case .failure(let error) = result else {
                round.delivered.append(row.id)
                continue
            }
            let disposition = error.publishDisposition
            metrics.publishFailure(topic: row.message.topic, disposition: disposition)
            switch disposition {
            case .fatal:
                throw error
            case .retriable:
                round.again.append((row, false))
                round.lastError = error
            case .permanentForWorker:
                round.again.append((row, false))
                round.blocked = (row.message.topic, error)
            case .permanentForMessage:
                if let replacement = replacement(for: row, refusedWith: error) {
                    round.again.append((replacement, true))
                } else {
                    try await park(row, reason: "\(error)")
                }
            }
        }
        return round
    }

    /// What to send instead of a row the broker or producer refused for good: a dead letter cut to half its weight,
    /// or — for a command — a dead letter carrying the command; `nil` when no smaller form exists.
    func replacement(for row: Outbox.Row, refusedWith error: KafkaError) -> Outbox.Row? {
        var row = row
        guard let commandID = row.commandID else {
            guard !row.message.value.isEmpty, let smaller = row.message.truncatedDeadLetter(toFit: row.message.wireSize / 2) else { return nil }
            logger.warning(
                "dead letter refused; sending a truncated copy",
                metadata: [LogKey.kafkaTopic: "\(row.message.topic)", LogKey.error: "\(error)", LogKey.bytes: "\(smaller.wireSize)"])
            row.message = smaller
            return row
        }
        let command = row.message
        var deadLetter = KafkaOutboundMessage(
            topic: deadLetterTopic, key: command.key, value: command.value,
            headers: command.headers
                + DeadLetter.headers(
                    reason: .handlerFailure,
                    message: "command \(commandID) (\(command.wireSize) bytes) refused by topic \(command.topic): \(error.code.name)",
                    source: row.source, offset: row.sourceOffset, worker: worker, failedAt: Date())
                + [KafkaHeader(key: "dlq.command.topic", text: command.topic), KafkaHeader(key: "dlq.command.id", text: commandID)])
        if deadLetter.wireSize > producerMessageLimit {
            guard let truncated = deadLetter.truncatedDeadLetter(toFit: producerMessageLimit) else { return nil }
            deadLetter = truncated
        }
        logger.warning(
            "command refused; dead-lettering it", metadata: [LogKey.kafkaTopic: "\(command.topic)", LogKey.error: "\(error)", LogKey.commandID: "\(commandID)"])
        row.message = deadLetter
        row.commandID = nil
        return row
    }

    /// Keeps a row that no form of can be published, and moves on.
    private func park(_ row: Outbox.Row, reason: String) async throws {
        logger.error(
            "outbox row parked: no form of it can be published",
            metadata: [LogKey.kafkaTopic: "\(row.message.topic)", LogKey.error: "\(reason)", LogKey.outboxID: "\(row.id)"])
        Counter(label: "rapport_outbox_parked_total", dimensions: [("topic", row.message.topic)]).increment()
        try await postgres.withConnection { try Outbox.park(row.id, reason: reason, connection: $0) }
    }
}
