import Metrics
import NextSale
import Shared

/// Folds the next-sale model's appended changes into its tables (``PurchaseModelStore/fold(limit:refreshAfter:now:connection:)``)
/// every `interval`, at once again while a full chunk (`chunk` entries) was folded (a ``PeriodicJob``). Every replica
/// runs one; an advisory lock makes one fold at a time, the others skip their turn. Each round also recomputes the
/// "customers like you" suggestions of up to `suggestionChunk` shoppers whose products changed
/// (``ShopperProducts/suggest(store:limit:refreshAfter:connection:)``, one replica at a time by another lock), and
/// publishes what every evaluated store is served (`rapport_nextsale_serves_model{store}`, ``StoreModelChoice``).
struct ModelCompactor: PeriodicJob {
    let postgres: PostgresClient
    let interval: Duration
    let refreshAfter: Duration
    /// A shopper's suggestions are recomputed at most this often (`SUGGESTIONS_REFRESH_SECONDS`).
    let suggestionsAfter: Duration
    var chunk = PurchaseModelStore.foldChunk
    /// Shoppers whose suggestions one round recomputes, in one transaction.
    var suggestionChunk = 500

    var name: String { "model_fold" }
    var failureMessage: String { "folding the next-sale model's changes failed; retrying with backoff" }

    func round() async throws -> PeriodicRound {
        let (chunk, refreshAfter, suggestionChunk, suggestionsAfter) = (self.chunk, self.refreshAfter, self.suggestionChunk, self.suggestionsAfter)
        let folded = try await postgres.withTransaction { try PurchaseModelStore.fold(limit: chunk, refreshAfter: refreshAfter, connection: $0) }
        // "Customers like you" for the shoppers whose products changed, off the order path; one replica at a time.
        let suggested = try await postgres.withTransaction { connection in
            guard try connection.query("SELECT pg_try_advisory_xact_lock(\(ShopperProducts.suggestionLock))").first?.decode(Bool.self) ?? false else {
                return 0
            }
            return try ShopperProducts.suggest(limit: suggestionChunk, refreshAfter: suggestionsAfter, connection: connection)
        }
        // What each evaluated store is served, for `rapport_nextsale_serves_model{store}` (1 the model, 0 its top sellers).
        let choices = try await postgres.withConnection { try $0.query("SELECT store_id, serves FROM receipt_store_models").decode((String, String).self) }
        for (store, serves) in choices {
            Gauge(label: "rapport_nextsale_serves_model", dimensions: [("store", store)]).record(serves == StoreModelChoice.Serves.model.rawValue ? 1 : 0)
        }
        return folded >= chunk || suggested >= suggestionChunk ? .more : .done
    }
}
