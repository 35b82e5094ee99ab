import Foundation
import Shared

/// One shopper's next-sale list from PostgreSQL: what `ReceiptWorker recommend` prints and what `rapport-bench
/// nextsale` scores, so that every figure of the model's quality is one the workers would recommend. Built from the
/// pieces the workers' batches use (`post_purchase`, `next_sale`, `win_back`): the history (``PurchaseHistory``),
/// the stated interests (`ShopperPreferences`), a ``CandidateQuery``, ``PostgresCandidateSource`` and
/// ``Recommender/rank(_:excluding:limit:)``.
public enum NextSaleRanker {
    /// At most `limit` products for `shopperID` of `store` as of `asOf` (the top sellers' 90 days end there), best
    /// first, never one the shopper bought.
    /// - Throws: ``PostgresError``.
    public static func recommend(store: String, shopperID: Int64, asOf: Date, limit: Int, connection: PostgresConnection) throws -> [Recommendation] {
        let history = try PurchaseHistory.load([(store, shopperID)], connection: connection)[shopperID] ?? []
        let interests = try ShopperPreferences.load([(store, shopperID)], connection: connection)[shopperID]?.interests ?? []
        let query = CandidateQuery(storeID: store, history: history, interests: interests, shopperID: shopperID)
        let candidates = try PostgresCandidateSource(connection: connection, asOf: asOf).candidates(for: [query])
        return Recommender.rank(candidates.first ?? Candidates(), excluding: Set(history.flatMap { $0.products.map(\.id) }), limit: limit)
    }
}
