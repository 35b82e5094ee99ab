import NextSale
import Shared

/// Folds the next-sale model's appended changes into its tables (``PurchaseModelStore/fold(limit:refreshAfter:now:connection:)``)
/// every `interval`, at once again while a full chunk (`chunk` entries) was folded (a ``PeriodicJob``). Every replica
/// runs one; an advisory lock makes one fold at a time, the others skip their turn.
struct ModelCompactor: PeriodicJob {
    let postgres: PostgresClient
    let interval: Duration
    let refreshAfter: Duration
    var chunk = PurchaseModelStore.foldChunk

    var name: String { "model_fold" }
    var failureMessage: String { "folding the next-sale model's changes failed; retrying with backoff" }

    func round() async throws -> PeriodicRound {
        let (chunk, refreshAfter) = (self.chunk, self.refreshAfter)
        let folded = try await postgres.withTransaction { try PurchaseModelStore.fold(limit: chunk, refreshAfter: refreshAfter, connection: $0) }
        return folded >= chunk ? .more : .done
    }
}
