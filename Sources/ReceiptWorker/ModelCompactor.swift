import Metrics
import NextSale
import Shared

/// Folds the next-sale model's appended changes into its tables (``PurchaseModelStore/fold(limit:refreshAfter:now:connection:)``)
/// every `interval`, at once again while a full chunk (`chunk` entries) was folded (a ``PeriodicJob``). Every replica
/// runs one; an advisory lock makes one fold at a time, the others skip their turn. Each round also publishes what
/// every evaluated store is served (`rapport_nextsale_serves_model{store}`, ``StoreModelChoice``).
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
        // What each evaluated store is served, for `rapport_nextsale_serves_model{store}` (1 the model, 0 its top sellers).
        let choices = try await postgres.withConnection { try $0.query("SELECT store_id, serves FROM receipt_store_models").decode((String, String).self) }
        for (store, serves) in choices {
            Gauge(label: "rapport_nextsale_serves_model", dimensions: [("store", store)]).record(serves == StoreModelChoice.Serves.model.rawValue ? 1 : 0)
        }
        return folded >= chunk ? .more : .done
    }
}
