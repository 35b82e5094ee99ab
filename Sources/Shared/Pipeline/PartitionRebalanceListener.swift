import Dispatch
import Logging
import Synchronization

/// The consumer's rebalance listener for a pipeline: answers every assignment with the offsets PostgreSQL recorded
/// (``OffsetStore``), notes which partitions arrived (``PartitionArrivals``), so that the pipeline first publishes
/// what a previous owner left in their outbox, and holds a revoked partition until the rows the pipeline has on their
/// way for it are sent (``PublicationInFlight``).
public final class PartitionRebalanceListener: KafkaRebalanceListener {
    private let postgres: PostgresClient
    private let groupID: String
    private let logger: Logger
    /// The partitions assigned and not yet relayed.
    let arrivals = PartitionArrivals()
    /// The pipeline's batch publication in flight (``Publication``).
    let publication = PublicationInFlight()
    /// How long a revocation waits for the rows on their way: the next owner relays what is left.
    static let revocationWait: Duration = .seconds(10)

    /// A listener for `groupID`'s partitions, whose offsets are in `postgres`.
    public init(postgres: PostgresClient, groupID: String, logger: Logger) {
        self.postgres = postgres
        self.groupID = groupID
        self.logger = logger
    }

    /// Runs on the consumer's poll thread (not a cooperative one), so it may wait for PostgreSQL. When PostgreSQL
    /// does not answer within 10 s, the partitions start from Kafka's committed offsets: those lag PostgreSQL's, and
    /// each batch's fence (``BatchTransaction``) and de-duplication make re-reading them harmless.
    public func partitionsAssigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        arrivals.add(partitions)
        let answer = Mutex<Result<[TopicPartition: Int64], any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let postgres = self.postgres
        let groupID = self.groupID
        Task {
            let result: Result<[TopicPartition: Int64], any Error>
            do {
                result = .success(try await postgres.withConnection { try OffsetStore.read(groupID: groupID, partitions: partitions, connection: $0) })
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
        arrivals.remove(partitions)
        if !publication.waitForFirstAttempt(touching: partitions, timeout: Self.revocationWait) {
            logger.warning("revoked partitions' outbox rows still on their way; their next owner may publish them again (same command ids)")
        }
    }

    public func partitionsLost(_ partitions: [TopicPartition]) {
        arrivals.remove(partitions)
    }
}

/// The partitions assigned since the pipeline last took them: their previous owner's outbox rows go out before
/// anything newer of theirs. Written on the consumer's poll thread, read by the pipeline.
final class PartitionArrivals: Sendable {
    private let partitions = Mutex<Set<TopicPartition>>([])

    func add(_ assigned: some Sequence<TopicPartition>) {
        partitions.withLock { $0.formUnion(assigned) }
    }

    func remove(_ revoked: some Sequence<TopicPartition>) {
        partitions.withLock { $0.subtract(revoked) }
    }

    /// The partitions assigned since the last call.
    func take() -> Set<TopicPartition> {
        partitions.withLock { arrivals in
            defer { arrivals.removeAll() }
            return arrivals
        }
    }

    /// Whether partitions arrived since the last ``take()``.
    var isEmpty: Bool {
        partitions.withLock { $0.isEmpty }
    }
}
