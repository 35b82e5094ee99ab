import Logging

/// Applies migrations exactly once however many replicas start together.
///
/// Everything happens in one transaction holding a transaction-scoped advisory lock: the first replica applies what
/// is missing and records it in `rapport_schema_migrations`; the others wait for the lock, then find nothing to do.
/// A failing migration rolls back every migration of that run.
public struct Migrator: Sendable {
    /// The advisory lock key every Rapport process agrees on ("Rapp" in ASCII).
    public static let lockKey: Int64 = 0x5261_7070

    private let client: PostgresClient
    private let logger: Logger

    /// A migrator working through `client`.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Applies what is missing of `migrations`, in the order given.
    ///
    /// - Returns: The migrations this call applied (none when another process had applied them).
    /// - Throws: ``MigrationError`` when an applied migration's text has changed since; ``PostgresError`` when a
    ///   migration fails (nothing of this run is kept).
    @discardableResult
    public func migrate(_ migrations: [Migration]) async throws -> [Migration] {
        let applied = try await client.withTransaction { connection -> [Migration] in
            try connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey))")
            try connection.executeScript(
                """
                CREATE TABLE IF NOT EXISTS rapport_schema_migrations (
                    component   text        NOT NULL,
                    version     integer     NOT NULL,
                    name        text        NOT NULL,
                    checksum    text        NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (component, version)
                )
                """)
            var known: [String: String] = [:]
            for (component, version, checksum) in try connection.query("SELECT component, version, checksum FROM rapport_schema_migrations")
                .decode((String, Int, String).self)
            {
                known["\(component)/\(version)"] = checksum
            }
            var applied: [Migration] = []
            for migration in migrations {
                if let checksum = known["\(migration.component)/\(migration.version)"] {
                    guard checksum == migration.checksum else {
                        throw MigrationError(
                            "\(migration.component) migration \(migration.version) (\(migration.name)) changed after it was applied; add a new migration instead"
                        )
                    }
                    continue
                }
                try connection.executeScript(migration.sql)
                try connection.query(
                    """
                    INSERT INTO rapport_schema_migrations (component, version, name, checksum)
                    VALUES (\(migration.component), \(migration.version), \(migration.name), \(migration.checksum))
                    """)
                applied.append(migration)
            }
            return applied
        }
        for migration in applied {
            logger.info("migration applied", metadata: [LogKey.migration: "\(migration.component)/\(migration.version)_\(migration.name)"])
        }
        return applied
    }
}
