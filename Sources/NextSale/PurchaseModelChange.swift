import Foundation
import Shared

/// What a set of customers' changed histories changes in the next-sale model: the succession counts by store
/// (``PurchaseCounts``, appended and folded later) and each customer's products (``ShopperProducts``). A batch adds
/// every customer it touches and records the whole in its transaction; the backtest adds each position's orders the
/// same way.
public struct PurchaseModelChange: Sendable {
    /// The counts' change, by store.
    public private(set) var counts: [String: PurchaseCounts] = [:]
    /// Each customer's products' change.
    public private(set) var shoppers: [(store: String, shopperID: Int64, changes: [ShopperProducts.Change])] = []

    public init() {}

    /// Adds the change of `shopperID` of `store`, whose completed orders go from `before` to `after`.
    public mutating func add(store: String, shopperID: Int64, from before: [PurchasedOrder], to after: [PurchasedOrder]) {
        let change = PurchaseCounts.change(from: before, to: after)
        if !change.isEmpty { counts[store, default: PurchaseCounts()].add(change) }
        let products = ShopperProducts.change(from: before, to: after)
        if !products.isEmpty { shoppers.append((store, shopperID, products)) }
    }

    /// Writes the change inside the caller's transaction.
    /// - Throws: ``PostgresError``.
    public func record(connection: PostgresConnection) throws {
        try PurchaseModelStore.record(counts, connection: connection)
        try ShopperProducts.record(shoppers, connection: connection)
    }
}
