import Dispatch
import Logging
import Synchronization

/// Where partitions resume: the offsets each batch's transaction records in PostgreSQL. As the consumer's rebalance
/// listener it answers every assignment with those offsets, remembers which partitions arrived, so that the
/// pipeline first publishes what a previous owner left in their outbox, and holds a revoked partition until the
/// rows the pipeline has on their way for it are sent.
public final class OffsetStore: KafkaRebalanceListener {
    private let postgres: PostgresClient
    private let groupID: String
    private let logger: Logger
    private let arrived = Mutex<Set<TopicPartition>>([])
    /// The pipeline's batch publication in flight (``Publication``).
    let publication = PublicationInFlight()
    /// How long a revocation waits for the rows on their way: the next owner relays what is left.
    static let revocationWait: Duration = .seconds(10)

    /// A store for `groupID`'s offsets in `postgres`.
    public init(postgres: PostgresClient, groupID: String, logger: Logger) {
        self.postgres = postgres
        self.groupID = groupID
        self.logger = logger
    }

    /// Runs on the consumer's poll thread (not a cooperative one), so it may wait for PostgreSQL. When PostgreSQL
    /// does not answer within 10 s, the partitions start from Kafka's committed offsets: those lag PostgreSQL's, and
    /// de-duplication makes re-reading them harmless.
    public func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        arrived.withLock { $0.formUnion(partitions) }
        let answer = Mutex<Result<[TopicPartition: Int64], any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let postgres = self.postgres
        let groupID = self.groupID
        Task {
            let result: Result<[TopicPartition: Int64], any Error>
            do {
                result = .success(try await postgres.withConnection { try Self.read(groupID: groupID, partitions: partitions, connection: $0) })
            } catch {
                result = .failure(error)
            }
            answer.withLock { $0 = result }
            done.signal()
        }
        guard done.wait(timeout: .now() + 10) == .success, let result = answer.withLock({ $0 }) else {
            logger.warning("no offsets from PostgreSQL in time; starting from Kafka's committed offsets")
            return [:]
        }
        switch result {
        case .success(let offsets):
            return offsets
        case .failure(let error):
            logger.warning("cannot read offsets from PostgreSQL; starting from Kafka's committed offsets", metadata: [LogKey.error: "\(error)"])
            return [:]
        }
    }

    /// Runs on the consumer's poll thread. Waits for the first send of the rows in flight from these partitions (and
    /// the delete of what it delivered), so that their next owner does not relay rows already on their way.
    public func partitionsRevoked(_ partitions: [TopicPartition]) {
        arrived.withLock { $0.subtract(partitions) }
        if !publication.waitForFirstAttempt(touching: partitions, timeout: Self.revocationWait) {
            logger.warning("revoked partitions' outbox rows still on their way; their next owner may publish them again (same command ids)")
        }
    }

    public func partitionsLost(_ partitions: [TopicPartition]) {
        arrived.withLock { $0.subtract(partitions) }
    }

    /// The partitions assigned since the last call.
    func takeArrivals() -> Set<TopicPartition> {
        arrived.withLock { arrivals in
            defer { arrivals.removeAll() }
            return arrivals
        }
    }

    /// Whether partitions arrived since the last ``takeArrivals()``.
    var hasArrivals: Bool {
        arrived.withLock { !$0.isEmpty }
    }

    /// Puts partitions back for the next ``takeArrivals()`` (their relay failed).
    func restoreArrivals(_ partitions: Set<TopicPartition>) {
        arrived.withLock { $0.formUnion(partitions) }
    }

    /// Where each of `partitions` (of one topic) resumes, as recorded; `locking`: their rows locked until the
    /// transaction ends, so that a batch of the same partitions in another transaction — a member that lost them and
    /// does not know it yet — waits, then sees what this one recorded.
    static func read(groupID: String, partitions: [TopicPartition], locking: Bool = false, connection: PostgresConnection) throws -> [TopicPartition: Int64] {
        guard let topic = partitions.first?.topic else { return [:] }
        var offsets: [TopicPartition: Int64] = [:]
        let numbers = PostgresArray(partitions.filter { $0.topic == topic }.map(\.partition))
        for (partition, offset) in try connection.query(
            """
            SELECT partition, next_offset FROM rapport_consumer_offsets
            WHERE group_id = \(groupID) AND topic = \(topic) AND partition = ANY(\(numbers)::integer[]) \(sql: locking ? "ORDER BY partition FOR UPDATE" : "")
            """
        ).decode((Int32, Int64).self) {
            offsets[TopicPartition(topic: topic, partition: partition)] = offset
        }
        return offsets
    }

    /// Records where each partition of a batch resumes, inside the batch's transaction.
    static func record(_ offsets: [TopicPartition: Int64], groupID: String, connection: PostgresConnection) throws {
        guard !offsets.isEmpty else { return }
        let entries = offsets.sorted { $0.key < $1.key }
        try connection.execute(
            .insert(
                into: "rapport_consumer_offsets", entries,
                [
                    .init("group_id", "text") { _ in groupID }, .init("topic", "text", \.key.topic), .init("partition", "integer", \.key.partition),
                    .init("next_offset", "bigint", \.value),
                ],
                then: """
                    ON CONFLICT (group_id, topic, partition) DO UPDATE
                    SET next_offset = greatest(t.next_offset, EXCLUDED.next_offset), updated_at = now()
                    """))
    }
}
