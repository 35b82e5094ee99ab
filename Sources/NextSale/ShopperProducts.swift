import Foundation
import Shared

/// What each shopper bought (`receipt_shopper_products`, with each shopper's count of distinct products in
/// `receipt_shopper_breadth`): the profiles "customers like you" compares, kept as orders arrive. A batch adds each
/// customer's change (``change(from:to:)``, a delta like ``PurchaseCounts``, so that two transactions touching one
/// shopper add up), a refund takes its order out, ``rebuild(store:connection:)`` recomputes a store's from its orders.
public enum ShopperProducts {
    /// One row's change: `orders` added to the orders that held the product, `lastAt` when the shopper last bought it
    /// after the change (`nil` when they no longer have: the row goes once it reaches zero).
    public struct Change: Sendable, Equatable {
        public var productID: String
        public var orders: Int
        public var lastAt: Date?
    }

    /// The rows of one customer whose completed orders go from `before` to `after`, and the change in how many
    /// distinct products they bought.
    public static func change(from before: [PurchasedOrder], to after: [PurchasedOrder]) -> (changes: [Change], breadth: Int) {
        func summary(_ orders: [PurchasedOrder]) -> [String: (orders: Int, last: Date)] {
            var bought: [String: (orders: Int, last: Date)] = [:]
            for order in orders {
                for product in order.products {
                    let seen = bought[product.id]
                    bought[product.id] = ((seen?.orders ?? 0) + 1, max(seen?.last ?? order.placedAt, order.placedAt))
                }
            }
            return bought
        }
        let old = summary(before)
        let new = summary(after)
        var changes: [Change] = []
        for (product, now) in new where old[product].map({ $0.orders != now.orders || $0.last != now.last }) ?? true {
            changes.append(Change(productID: product, orders: now.orders - (old[product]?.orders ?? 0), lastAt: now.last))
        }
        for (product, was) in old where new[product] == nil { changes.append(Change(productID: product, orders: -was.orders, lastAt: nil)) }
        return (changes.sorted { $0.productID < $1.productID }, new.count - old.count)
    }

    /// Adds the changes of `customers` (store, shopper, rows, breadth change) inside the caller's transaction: one
    /// upsert of the rows in key order (two batches wait rather than deadlock), one of the breadths, and — only when
    /// something was taken out — a delete of the rows that reached zero.
    /// - Throws: ``PostgresError``.
    public static func record(_ customers: [(store: String, shopperID: Int64, changes: [Change], breadth: Int)], connection: PostgresConnection) throws {
        let sorted = customers.sorted { ($0.store, $0.shopperID) < ($1.store, $1.shopperID) }
        let rows = sorted.flatMap { customer in customer.changes.map { (customer.store, customer.shopperID, $0) } }
        guard !rows.isEmpty else { return }
        let keys = (PostgresArray(rows.map(\.0)), PostgresArray(rows.map(\.1)), PostgresArray(rows.map(\.2.productID)))
        try connection.execute(
            """
            INSERT INTO receipt_shopper_products AS t (store_id, shopper_id, product_id, orders, last_at)
            SELECT s, h, p, n, coalesce(l, '-infinity')
            FROM unnest(\(keys.0)::text[], \(keys.1)::bigint[], \(keys.2)::text[], \(PostgresArray(rows.map(\.2.orders)))::int[],
                        \(PostgresArray(rows.map(\.2.lastAt)))::timestamptz[]) AS c(s, h, p, n, l)
            ON CONFLICT (store_id, shopper_id, product_id) DO UPDATE
            SET orders = t.orders + EXCLUDED.orders, last_at = CASE WHEN EXCLUDED.last_at = '-infinity' THEN t.last_at ELSE EXCLUDED.last_at END
            """)
        let breadths = sorted.filter { $0.breadth != 0 }
        if !breadths.isEmpty {
            try connection.execute(
                """
                INSERT INTO receipt_shopper_breadth AS t (store_id, shopper_id, products)
                SELECT * FROM unnest(\(PostgresArray(breadths.map(\.store)))::text[], \(PostgresArray(breadths.map(\.shopperID)))::bigint[],
                                     \(PostgresArray(breadths.map(\.breadth)))::int[])
                ON CONFLICT (store_id, shopper_id) DO UPDATE SET products = t.products + EXCLUDED.products
                """)
        }
        guard rows.contains(where: { $0.2.orders < 0 }) else { return }
        try connection.execute(
            """
            DELETE FROM receipt_shopper_products
            WHERE (store_id, shopper_id, product_id) IN (SELECT * FROM unnest(\(keys.0)::text[], \(keys.1)::bigint[], \(keys.2)::text[])) AND orders <= 0
            """)
        try connection.execute(
            """
            DELETE FROM receipt_shopper_breadth
            WHERE (store_id, shopper_id) IN (SELECT * FROM unnest(\(keys.0)::text[], \(keys.1)::bigint[])) AND products <= 0
            """)
    }

    /// Recomputes `store`'s rows from its completed orders with a shopper (an erased shopper's orders have none),
    /// inside the caller's transaction.
    /// - Throws: ``PostgresError``.
    public static func rebuild(store: String, connection: PostgresConnection) throws {
        try connection.execute("DELETE FROM receipt_shopper_products WHERE store_id = \(store)")
        try connection.execute("DELETE FROM receipt_shopper_breadth WHERE store_id = \(store)")
        try connection.execute(
            """
            INSERT INTO receipt_shopper_products (store_id, shopper_id, product_id, orders, last_at)
            SELECT o.store_id, o.shopper_id, i.product_id, count(DISTINCT o.order_id), max(o.placed_at)
            FROM receipt_orders o JOIN receipt_order_items i ON i.store_id = o.store_id AND i.order_id = o.order_id
            WHERE o.store_id = \(store) AND o.status = 'completed' AND o.shopper_id IS NOT NULL
            GROUP BY 1, 2, 3
            """)
        try connection.execute(
            """
            INSERT INTO receipt_shopper_breadth (store_id, shopper_id, products)
            SELECT store_id, shopper_id, count(*) FROM receipt_shopper_products WHERE store_id = \(store) GROUP BY 1, 2
            """)
    }
}
