import Logging
import ServiceLifecycle
import Synchronization

/// A small pool of PostgreSQL connections, and a `Service` that closes them at shutdown.
///
/// Work is lent a connection and runs on that connection's own thread, off the cooperative pool:
/// ```swift
/// let count = try await client.withTransaction { connection in
///     try connection.executeBatch("INSERT INTO t (a) VALUES ($1)", rows)
/// }
/// ```
/// A connection found broken (server restart, network) is dropped when it comes back; the next work opens a new one.
/// So after a restart the work in flight fails with a retriable ``PostgresError`` and the next attempt succeeds.
public final class PostgresClient: Service, Sendable {
    private enum Grant {
        case connection(PostgresConnection)
        case open
    }

    private struct State {
        var idle: [PostgresConnection] = []
        var open = 0
        var waiters: [CheckedContinuation<Grant, any Error>] = []
        var isClosed = false
    }

    /// The configuration the pool was made with.
    public let configuration: PostgresConfiguration
    private let state = Mutex(State())
    private let logger: Logger

    /// Creates a pool; connections open lazily, on first use.
    public init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Lends a connection to `body`, which runs on the connection's thread and may block.
    /// - Throws: ``PostgresError`` when no connection can be opened, or what `body` throws.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        let connection = try await lease()
        do {
            let value = try await connection.queue.run { try body(connection) }
            giveBack(connection)
            return value
        } catch {
            giveBack(connection)
            throw error
        }
    }

    /// Runs `body` in one transaction on a lent connection: committed when it returns, rolled back when it throws.
    /// - Throws: ``PostgresError``, or what `body` throws.
    public func withTransaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withConnection { connection in try connection.transaction { try body(connection) } }
    }

    /// Waits for graceful shutdown, then closes every idle connection and refuses new work.
    public func run() async throws {
        try? await gracefulShutdown()
        close()
    }

    /// Closes idle connections and fails waiters; connections in use close when they come back.
    public func close() {
        let (idle, waiters) = state.withLock { state -> ([PostgresConnection], [CheckedContinuation<Grant, any Error>]) in
            state.isClosed = true
            defer {
                state.open -= state.idle.count
                state.idle = []
                state.waiters = []
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters { waiter.resume(throwing: PostgresError(code: .clientClosed, message: "the PostgreSQL client is closed")) }
        withExtendedLifetime(idle) {}
    }

    private func lease() async throws -> PostgresConnection {
        let immediate: Grant? = try state.withLock { state in
            if state.isClosed { throw PostgresError(code: .clientClosed, message: "the PostgreSQL client is closed") }
            if let connection = state.idle.popLast() { return .connection(connection) }
            if state.open < configuration.poolSize {
                state.open += 1
                return .open
            }
            return nil
        }
        let grant: Grant
        if let immediate {
            grant = immediate
        } else {
            grant = try await withCheckedThrowingContinuation { continuation in
                let granted: Grant? = state.withLock { state in
                    // Re-check under the lock: a connection may have come back meanwhile.
                    if let connection = state.idle.popLast() { return .connection(connection) }
                    if state.open < configuration.poolSize {
                        state.open += 1
                        return .open
                    }
                    state.waiters.append(continuation)
                    return nil
                }
                if let granted { continuation.resume(returning: granted) }
            }
        }
        switch grant {
        case .connection(let connection):
            return connection
        case .open:
            let queue = BlockingQueue(label: "rapport.postgres.connection")
            let configuration = self.configuration
            do {
                return try await queue.run { try PostgresConnection.connect(configuration, queue: queue) }
            } catch {
                releaseSlot()
                throw error
            }
        }
    }

    private func giveBack(_ connection: PostgresConnection) {
        if connection.isBroken {
            logger.warning("dropping a broken PostgreSQL connection")
            releaseSlot()
            return
        }
        let waiter: CheckedContinuation<Grant, any Error>? = state.withLock { state in
            if state.isClosed {
                state.open -= 1
                return nil
            }
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.idle.append(connection)
            return nil
        }
        waiter?.resume(returning: .connection(connection))
    }

    /// A connection slot was freed (a connection dropped or never opened): let the next waiter open one.
    private func releaseSlot() {
        let waiter: CheckedContinuation<Grant, any Error>? = state.withLock { state in
            if !state.isClosed, !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.open -= 1
            return nil
        }
        waiter?.resume(returning: .open)
    }
}
