import Dispatch
import Synchronization

/// A committed batch's outbox rows on their way to Kafka while the pipeline polls, decodes and commits the next batch.
///
/// Publishing used to sit between one batch's transaction and the next batch's poll, with nothing else running: the
/// worker waited for delivery reports and the outbox delete while PostgreSQL idled. Now the first attempt — one send
/// of every row, then one delete of the rows it delivered — runs in the background, and the pipeline finishes it
/// (``Pipeline/finish(_:)``: what failed is classified and retried as before, then the Kafka offsets are committed)
/// only once the next batch has committed, before that batch's rows go out (or when a poll finds nothing new, or on
/// shutdown). So a partition's commands still reach
/// Kafka in the order their events were applied, and at most one batch is ever in flight.
///
/// A partition revoked while its rows are in flight waits for the first attempt before it moves
/// (``PartitionRebalanceListener/partitionsRevoked(_:)``): its next owner relays only what is still in the outbox, not rows on
/// their way.
final class Publication: Sendable {
    /// What the first attempt did.
    struct FirstAttempt: Sendable {
        /// One result per row, in order.
        var results: [Result<KafkaDeliveryReport, KafkaError>]
        /// Whether the rows it delivered were deleted from the outbox; if not, ``Pipeline/publish(_:after:)`` deletes
        /// them with its retries.
        var deleted: Bool
    }

    /// The batch's outbox rows, in write order.
    let rows: [Outbox.Row]
    /// Where the batch's partitions resume: committed to Kafka once every row is delivered.
    let nextOffsets: [TopicPartition: Int64]
    /// The input partitions whose rows these are, and the batch's: those whose revocation waits for the first attempt.
    let partitions: Set<TopicPartition>
    private let attempt: Task<FirstAttempt, any Error>
    /// Left when the first attempt ends, however it ends: the rebalance callback waits on it (on the consumer's poll
    /// thread, which may block), the pipeline awaits ``firstAttempt()``.
    private let ended = DispatchGroup()

    /// Starts sending `rows` through `producer` and deleting from `postgres` what was delivered.
    init(rows: [Outbox.Row], nextOffsets: [TopicPartition: Int64], producer: KafkaProducer, postgres: PostgresClient) {
        self.rows = rows
        self.nextOffsets = nextOffsets
        partitions = Set(rows.map(\.source)).union(nextOffsets.keys)
        let ended = self.ended
        ended.enter()
        attempt = Task {
            defer { ended.leave() }
            guard !rows.isEmpty else { return FirstAttempt(results: [], deleted: true) }
            // Throws only when the producer is unusable (fatal or closed): the pipeline rethrows it from `finish`.
            let results = try await producer.send(rows.map(\.message))
            let delivered = zip(rows, results).compactMap { row, result in (try? result.get()).map { _ in row.id } }
            guard !delivered.isEmpty else { return FirstAttempt(results: results, deleted: true) }
            // One try: on failure the pipeline deletes them again, backing off while PostgreSQL is away.
            let deleted = (try? await postgres.withConnection { try Outbox.delete(delivered, connection: $0) }) != nil
            return FirstAttempt(results: results, deleted: deleted)
        }
    }

    /// The first attempt's outcome, once it has ended.
    /// - Throws: ``KafkaError`` when the producer was unusable.
    func firstAttempt() async throws -> FirstAttempt {
        try await attempt.value
    }

    /// Blocks the calling thread until the first attempt has ended or `timeout` has passed.
    /// - Returns: Whether it ended in time.
    func waitForFirstAttempt(timeout: Duration) -> Bool {
        ended.wait(timeout: .now() + .milliseconds(Int(timeout.milliseconds))) == .success
    }
}

/// The pipeline's publication in flight, at most one: the pipeline starts and finishes it
/// (``Pipeline/startPublication(_:nextOffsets:)``, ``Pipeline/finish()``), a revocation of its partitions waits for
/// its first attempt.
final class PublicationInFlight: Sendable {
    private let slot = Mutex<Publication?>(nil)

    /// The publication in flight, if any.
    var current: Publication? {
        slot.withLock { $0 }
    }

    func set(_ publication: Publication) {
        slot.withLock { $0 = publication }
    }

    func clear() {
        slot.withLock { $0 = nil }
    }

    /// Waits up to `timeout` for the first attempt of the publication in flight, if it touches `partitions`.
    /// - Returns: Whether it ended in time (or there was none to wait for).
    func waitForFirstAttempt(touching partitions: [TopicPartition], timeout: Duration) -> Bool {
        guard let publication = current, !publication.partitions.isDisjoint(with: partitions) else { return true }
        return publication.waitForFirstAttempt(timeout: timeout)
    }
}
