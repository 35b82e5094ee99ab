import Logging

/// What every operator command (`explain`, `recommend`, `rebuild`, …) shares: it reads `DATABASE_URL`, works on one
/// connection, and keeps the client's own logging quiet (its output is the answer on stdout).
public enum OperatorCommand {
    /// Runs `body` on one connection of a pool made from the environment, named `applicationName` in PostgreSQL.
    /// - Throws: ``ConfigurationError`` naming a bad variable; what `body` throws.
    public static func withConnection<T: Sendable>(
        applicationName: String, transaction: Bool = false, _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        let configuration = try PostgresConfiguration(environment: Environment(), applicationName: applicationName)
        var logger = Logger(label: applicationName)
        logger.logLevel = .critical
        let postgres = PostgresClient(configuration: configuration, logger: logger)
        defer { postgres.close() }
        return transaction ? try await postgres.withTransaction(body) : try await postgres.withConnection(body)
    }
}
