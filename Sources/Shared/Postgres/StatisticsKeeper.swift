import Logging

/// Keeps the planner's statistics fresh for tables that grow from empty. Autovacuum analyzes a table once a tenth of
/// it has changed, but looks only every minute (`autovacuum_naptime`): in a store's first minutes, or after a bulk
/// import, the planner still believes the tables are nearly empty and turns index probes into sequential scans and
/// hash joins — measured in the receipt benchmark, where the plans of the history read and the journey's `retime`
/// flipped that way and one batch took seconds instead of milliseconds. Every `interval` this service `ANALYZE`s each
/// of the worker's tables (its component's and the shared `rapport_` ones) that has had at least `minimumChanges` rows
/// changed and at least as many changes as live rows before them since its last analysis — that is, one that has
/// doubled; a large table's steady growth is left to autovacuum, and so is a queue (more dead rows than live: the
/// outbox, the next-sale model's changes), which its statements read by primary key whatever the statistics say. One
/// replica at a time (an advisory lock). Tables the worker's role does not own are skipped by PostgreSQL with a warning.
public final class StatisticsKeeper: PeriodicJob {
    private let postgres: PostgresClient
    private let component: String
    public let interval: Duration
    private let minimumChanges: Int
    private let logger: Logger

    static let lock: Int64 = 0x7261_7070_7374_6174  // "rappstat"

    public init(postgres: PostgresClient, component: String, interval: Duration = .seconds(5), minimumChanges: Int = 500, logger: Logger) {
        self.postgres = postgres
        self.component = component
        self.interval = interval
        self.minimumChanges = minimumChanges
        self.logger = logger
    }

    public var name: String { "statistics" }
    public var failureMessage: String { "refreshing table statistics failed; retrying with backoff" }

    public func round() async throws -> PeriodicRound {
        let analyzed = try await refresh()
        if !analyzed.isEmpty { logger.debug("analyzed growing tables", metadata: ["tables": "\(analyzed.joined(separator: ","))"]) }
        return .done
    }

    /// Analyzes the tables that doubled since their last analysis.
    /// - Returns: Their names.
    @discardableResult
    public func refresh() async throws -> [String] {
        let (component, minimum) = (self.component, minimumChanges)
        return try await postgres.withConnection { connection in
            guard try connection.query("SELECT pg_try_advisory_lock(\(Self.lock))").first?.decode(Bool.self) == true else { return [] }
            defer { _ = try? connection.query("SELECT pg_advisory_unlock(\(Self.lock))") }
            let tables = try connection.query(
                """
                SELECT relname::text FROM pg_stat_user_tables
                WHERE schemaname = current_schema() AND (relname LIKE \(component)::text || '\\_%' OR relname LIKE 'rapport\\_%')
                  AND n_mod_since_analyze >= \(minimum) AND n_mod_since_analyze >= n_live_tup - n_mod_since_analyze AND n_dead_tup <= n_live_tup
                ORDER BY relname
                """
            ).decode(String.self)
            for table in tables { try connection.execute("ANALYZE \(identifier: table)") }
            return tables
        }
    }
}
