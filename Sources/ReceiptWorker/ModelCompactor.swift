import Logging
import NextSale
import ServiceLifecycle
import Shared

/// Folds the next-sale model's appended changes into its tables (``PurchaseModelStore/fold(limit:refreshAfter:now:connection:)``)
/// every `interval`, at once again while a full chunk (`chunk` entries) was folded. Every replica runs one; an advisory lock makes one
/// fold at a time, the others skip their turn.
final class ModelCompactor: Service, Sendable {
    private let postgres: PostgresClient
    private let interval: Duration
    private let refreshAfter: Duration
    private let chunk: Int
    private let logger: Logger

    init(postgres: PostgresClient, interval: Duration, refreshAfter: Duration, chunk: Int = PurchaseModelStore.foldChunk, logger: Logger) {
        self.postgres = postgres
        self.interval = interval
        self.refreshAfter = refreshAfter
        self.chunk = chunk
        self.logger = logger
    }

    func run() async throws {
        var failures = 0
        let backoff = Backoff(base: .milliseconds(200), cap: .seconds(10))
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            var pause = interval
            do {
                let (chunk, refreshAfter) = (self.chunk, self.refreshAfter)
                let folded = try await postgres.withTransaction { try PurchaseModelStore.fold(limit: chunk, refreshAfter: refreshAfter, connection: $0) }
                failures = 0
                if folded >= chunk { continue }
            } catch {
                failures += 1
                if failures == 1 { logger.warning("folding the next-sale model's changes failed; retrying with backoff", metadata: [LogKey.error: "\(error)"]) }
                pause = backoff.delay(attempt: failures - 1)
            }
            let wait = pause
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }
}
