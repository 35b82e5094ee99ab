import ArgumentParser
import Foundation
import Logging
import NextSale
import Shared

/// `ReceiptWorker rebuild --store S`: recomputes the store's next-sale model from its orders — after a backfill
/// written straight to the tables, or a change to what the model counts. One `REPEATABLE READ` transaction: the
/// orders it reads and the pending changes it drops are the same snapshot, so a batch committing meanwhile is counted
/// once (by its change, folded later); folds wait for it.
struct Rebuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Recompute a store's next-sale model from its recorded orders.")

    @Option(help: "The store (context.storeId).")
    var store: String

    func run() async throws {
        let store = self.store
        let (customers, orders) = try await OperatorCommand.withConnection(applicationName: "ReceiptWorker rebuild", transaction: true) {
            try Self.rebuild(store: store, connection: $0)
        }
        print("rebuilt the next-sale model of \(store) from \(orders) orders of \(customers) customers")
    }

    /// Replaces the store's model with the counts of its completed orders, grouped by shopper (an order no shopper
    /// owns — erased, or recorded before shoppers were shared — counts under its own key).
    /// - Returns: How many customers and orders it counted.
    static func rebuild(store: String, connection: PostgresConnection) throws -> (customers: Int, orders: Int) {
        try connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        var histories: [String: [String: (Date, [PurchasedOrder.Product])]] = [:]
        for (key, order, at, product, category) in try connection.query(
            """
            SELECT coalesce(o.shopper_id::text, o.shopper_key), o.order_id, o.placed_at, i.product_id, i.category
            FROM receipt_orders o JOIN receipt_order_items i ON i.store_id = o.store_id AND i.order_id = o.order_id
            WHERE o.store_id = \(store) AND o.status = 'completed' ORDER BY i.line
            """
        ).decode((String, String, Date, String, String?).self) {
            histories[key, default: [:]][order, default: (at, [])].1.append(.init(id: product, category: category))
        }
        var counts = PurchaseCounts()
        var orders = 0
        for byOrder in histories.values {
            orders += byOrder.count
            counts.add(PurchaseCounts(customer: byOrder.map { PurchasedOrder(orderID: $0.key, placedAt: $0.value.0, products: $0.value.1) }))
        }
        try PurchaseModelStore.replace(store: store, with: counts, connection: connection)
        return (histories.count, orders)
    }
}
