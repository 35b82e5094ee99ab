import Foundation
import Shared

/// Customers' completed orders as the next-sale model reads them (`receipt_orders`, `receipt_order_items`).
public enum PurchaseHistory {
    /// The completed orders of each customer (`shopper_key`) in `customers`, by customer; refunded and cancelled
    /// orders do not count. Index probes only (`LATERAL`: with statistics from when the tables were small, a join
    /// read every item of the store).
    /// - Throws: ``PostgresError``.
    public static func load(_ customers: [(store: String, key: String)], connection: PostgresConnection) throws -> [String: [PurchasedOrder]] {
        guard !customers.isEmpty else { return [:] }
        var orders: [String: [String: (placedAt: Date, products: [PurchasedOrder.Product])]] = [:]
        for row in try connection.query(
            """
            SELECT o.shopper_key, o.order_id, o.placed_at, i.product_id, i.category
            FROM unnest($1::text[], $2::text[]) AS u(store_id, shopper_key)
            CROSS JOIN LATERAL (
                SELECT o.order_id, o.placed_at, o.shopper_key FROM receipt_orders o
                WHERE o.store_id = u.store_id AND o.shopper_key = u.shopper_key AND o.status = 'completed') o
            CROSS JOIN LATERAL (
                SELECT i.product_id, i.category, i.line FROM receipt_order_items i WHERE i.store_id = u.store_id AND i.order_id = o.order_id) i
            ORDER BY o.shopper_key, o.placed_at, o.order_id, i.line
            """, [PostgresArray(customers.map(\.store)), PostgresArray(customers.map(\.key))])
        {
            guard let key = try row.decode(String.self, at: 0), let order = try row.decode(String.self, at: 1), let placedAt = try row.decode(Date.self, at: 2),
                let product = try row.decode(String.self, at: 3)
            else { continue }
            orders[key, default: [:]][order, default: (placedAt, [])].products.append(.init(id: product, category: try row.decode(String.self, at: 4)))
        }
        return orders.mapValues { byID in
            PurchasedOrder.sequence(byID.map { PurchasedOrder(orderID: $0.key, placedAt: $0.value.placedAt, products: $0.value.products) })
        }
    }
}
