import Foundation
import Shared

/// What each store is served (`receipt_store_models`): the model, or — when its own backtest (`ReceiptWorker
/// evaluate`) said the model does not beat its top sellers — the top sellers, `popular_in_store`, until a backtest
/// says the model does. A store never evaluated is served the model.
public enum StoreModelChoice {
    /// What a store is served.
    public enum Serves: String, Sendable {
        case model
        case popularity
    }

    /// A store's decision as recorded.
    public struct Decision: Sendable, Equatable {
        public var serves: Serves
        public var decidedAt: Date
        /// The backtest's one-line summary (figures and why).
        public var summary: String
    }

    /// Whether `store` is served its top sellers instead of the model.
    /// - Throws: ``PostgresError``.
    public static func servesPopularity(store: String, connection: PostgresConnection) throws -> Bool {
        try decision(store: store, connection: connection)?.serves == .popularity
    }

    /// `store`'s recorded decision, if a backtest made one.
    /// - Throws: ``PostgresError``.
    public static func decision(store: String, connection: PostgresConnection) throws -> Decision? {
        try connection.query("SELECT serves, decided_at, summary FROM receipt_store_models WHERE store_id = \(store)")
            .decode((String, Date, String).self).first
            .map { Decision(serves: Serves(rawValue: $0.0) ?? .model, decidedAt: $0.1, summary: $0.2) }
    }

    /// Records what `backtest` decides for `store` (``NextSaleBacktest/serves``), replacing any earlier decision.
    /// - Throws: ``PostgresError``.
    public static func record(store: String, backtest: NextSaleBacktest, at now: Date, connection: PostgresConnection) throws {
        try connection.execute(
            """
            INSERT INTO receipt_store_models (store_id, serves, decided_at, holdout, tested, model_hit, lead_low, popular_hit, buyers_hit, summary)
            VALUES (\(store), \(backtest.serves.rawValue), \(now), \(backtest.holdoutOrders), \(backtest.tested), \(backtest.model.hit.value),
                    \(backtest.lead.low), \(backtest.byOrders.hit.value), \(backtest.byBuyers.hit.value), \(backtest.summary))
            ON CONFLICT (store_id) DO UPDATE
            SET serves = EXCLUDED.serves, decided_at = EXCLUDED.decided_at, holdout = EXCLUDED.holdout, tested = EXCLUDED.tested,
                model_hit = EXCLUDED.model_hit, lead_low = EXCLUDED.lead_low, popular_hit = EXCLUDED.popular_hit,
                buyers_hit = EXCLUDED.buyers_hit, summary = EXCLUDED.summary
            """)
    }
}
