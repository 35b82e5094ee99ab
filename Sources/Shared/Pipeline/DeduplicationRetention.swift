import Logging
import ServiceLifecycle

/// Keeps `rapport_processed_messages` from growing without bound: every `interval` it deletes the group's rows older
/// than `window`, a chunk at a time (short transactions, no long lock on the table).
///
/// The window is how long a message id is remembered: a message redelivered later than that — a topic replayed from
/// further back than the window — would be applied again. Keep it longer than the input topics' retention.
public final class DeduplicationRetention: PeriodicJob {
    private let postgres: PostgresClient
    private let groupID: String
    private let window: Duration
    public let interval: Duration
    private let chunk: Int
    private let logger: Logger

    /// Forgets `groupID`'s message ids older than `window`, checking every `interval` (default 1 h), deleting at most
    /// `chunk` rows per statement (default 10,000).
    public init(
        postgres: PostgresClient, groupID: String, window: Duration, interval: Duration = .seconds(3600), chunk: Int = 10_000, logger: Logger
    ) {
        self.postgres = postgres
        self.groupID = groupID
        self.window = window
        self.interval = interval
        self.chunk = chunk
        self.logger = logger
    }

    public var name: String { "deduplication_retention" }
    public var failureMessage: String { "de-duplication retention failed; retrying with backoff" }

    public func round() async throws -> PeriodicRound {
        let deleted = try await purge()
        if deleted > 0 { logger.info("forgot processed message ids past the de-duplication window", metadata: ["rows": "\(deleted)"]) }
        return .done
    }

    /// Deletes the group's rows older than the window, a chunk per transaction, until none is left.
    /// - Returns: How many rows were deleted.
    /// - Throws: ``PostgresError``.
    public func purge() async throws -> Int {
        let groupID = self.groupID
        let seconds = Int(window.seconds)
        let chunk = self.chunk
        var total = 0
        while !Task.isShuttingDownGracefully {
            let deleted = try await postgres.withConnection { connection in
                try connection.execute(
                    """
                    DELETE FROM rapport_processed_messages WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM rapport_processed_messages
                        WHERE group_id = \(groupID) AND processed_at < now() - make_interval(secs => \(seconds))
                        LIMIT \(chunk)))
                    """)
            }
            total += deleted
            if deleted < chunk { break }
        }
        return total
    }
}
