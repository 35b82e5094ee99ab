import Foundation
import Shared

/// Customers' completed orders as the next-sale model reads them (`receipt_orders`, `receipt_order_items`).
public enum PurchaseHistory {
    /// The completed orders of each customer (`shopper_key`) in `customers`, by customer; refunded and cancelled
    /// orders do not count. One index probe per customer.
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
            JOIN receipt_order_items i ON i.store_id = u.store_id AND i.order_id = o.order_id
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
