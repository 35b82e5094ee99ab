import Foundation
import Shared

/// Customers' completed orders as the next-sale model reads them (`receipt_orders`, `receipt_order_items`).
public enum PurchaseHistory {
    /// The completed orders of each shopper (the shared shopper, `shopper_id`) in `shoppers`, by shopper; refunded and
    /// cancelled orders do not count. Index probes only: each `LATERAL` subquery ends in `OFFSET 0`, which keeps the
    /// planner from flattening it into a join — flattened, with statistics from when the tables were small (a store's
    /// first minute, before autovacuum's first `ANALYZE`), it became a hash join over a sequential scan of the orders
    /// and a read of the store's every item: measured by `auto_explain` in the receipt benchmark, 3.2 s a batch
    /// instead of 30 ms, and the cause of that benchmark's spread from 268 to 1,617 orders/s.
    /// - Throws: ``PostgresError``.
    public static func load(_ shoppers: [(store: String, shopperID: Int64)], connection: PostgresConnection) throws -> [Int64: [PurchasedOrder]] {
        guard !shoppers.isEmpty else { return [:] }
        var orders: [Int64: [String: (placedAt: Date, products: [PurchasedOrder.Product])]] = [:]
        for (key, order, placedAt, product, category) in try connection.query(
            """
            SELECT u.shopper_id, o.order_id, o.placed_at, i.product_id, i.category
            FROM unnest(\(PostgresArray(shoppers.map(\.store)))::text[], \(PostgresArray(shoppers.map(\.shopperID)))::bigint[]) AS u(store_id, shopper_id)
            CROSS JOIN LATERAL (
                SELECT o.order_id, o.placed_at FROM receipt_orders o
                WHERE o.store_id = u.store_id AND o.shopper_id = u.shopper_id AND o.status = 'completed' OFFSET 0) o
            CROSS JOIN LATERAL (
                SELECT i.product_id, i.category, i.line FROM receipt_order_items i WHERE i.store_id = u.store_id AND i.order_id = o.order_id OFFSET 0) i
            ORDER BY u.shopper_id, o.placed_at, o.order_id, i.line
            """
        ).decode((Int64, String, Date, String, String?).self) {
            orders[key, default: [:]][order, default: (placedAt, [])].products.append(.init(id: product, category: category))
        }
        return orders.mapValues { byID in
            PurchasedOrder.sequence(byID.map { PurchasedOrder(orderID: $0.key, placedAt: $0.value.placedAt, products: $0.value.products) })
        }
    }

    /// Every completed order of `store`, by customer: the shared shopper, or for an order no shopper owns (erased, or
    /// recorded before shoppers were shared) its own key — what a rebuild counts and a backtest replays.
    /// - Throws: ``PostgresError``.
    public static func store(_ store: String, connection: PostgresConnection) throws -> [(shopperID: Int64?, orders: [PurchasedOrder])] {
        var customers: [String: (shopperID: Int64?, orders: [String: (Date, [PurchasedOrder.Product])])] = [:]
        for (key, shopper, order, at, product, category) in try connection.query(
            """
            SELECT coalesce(o.shopper_id::text, o.shopper_key), o.shopper_id, o.order_id, o.placed_at, i.product_id, i.category
            FROM receipt_orders o JOIN receipt_order_items i ON i.store_id = o.store_id AND i.order_id = o.order_id
            WHERE o.store_id = \(store) AND o.status = 'completed' ORDER BY i.line
            """
        ).decode((String, Int64?, String, Date, String, String?).self) {
            customers[key, default: (shopper, [:])].orders[order, default: (at, [])].1.append(.init(id: product, category: category))
        }
        return customers.values.map { customer in
            (customer.shopperID, customer.orders.map { PurchasedOrder(orderID: $0.key, placedAt: $0.value.0, products: $0.value.1) })
        }
    }
}
