import Foundation
import Shared

/// Churn's reading of the orders ReceiptWorker records (`receipt_orders`, in the same database): each customer's
/// completed orders as they stood at a moment — an order counts from when it was placed until a refund or a
/// cancellation ended it.
public enum ChurnStore {
    /// One customer's summary.
    public struct Customer: Sendable, Equatable {
        public var shopperID: Int64
        public var summary: OrderSummary
    }

    /// Whether ReceiptWorker's orders are in this database (a SurveyWorker without them has no customers to score).
    public static func ordersAvailable(connection: PostgresConnection) throws -> Bool {
        try connection.query("SELECT to_regclass('receipt_orders') IS NOT NULL").first?.decode(Bool.self) ?? false
    }

    /// The stores with orders: a skip scan over the primary key, one probe per store.
    public static func stores(connection: PostgresConnection) throws -> [String] {
        try connection.query(
            """
            WITH RECURSIVE s(store_id) AS (
                SELECT min(store_id) FROM receipt_orders
                UNION ALL
                SELECT (SELECT min(o.store_id) FROM receipt_orders o WHERE o.store_id > s.store_id) FROM s WHERE s.store_id IS NOT NULL)
            SELECT store_id FROM s WHERE store_id IS NOT NULL
            """
        ).decode(String.self)
    }

    /// The predicate of an order that stood at `asOf` (placed by then, not yet ended).
    static func standing(_ asOf: Date) -> PostgresQuery {
        "o.shopper_id IS NOT NULL AND o.placed_at <= \(asOf) AND (o.status = 'completed' OR o.ended_at > \(asOf))"
    }

    /// The store's medians as of `asOf`: the first→second gap of customers with two orders, the customers' mean order
    /// value. One read of the store's orders.
    public static func baseline(store: String, asOf: Date, connection: PostgresConnection) throws -> StoreBaseline {
        let (gap, value) =
            try connection.query(
                """
                WITH o AS (
                    SELECT o.shopper_id, o.placed_at, o.total,
                           row_number() OVER (PARTITION BY o.shopper_id ORDER BY o.placed_at, o.order_id) AS k
                    FROM receipt_orders o WHERE o.store_id = \(store) AND \(standing(asOf)))
                SELECT (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.placed_at - f.placed_at) / 86400)
                        FROM o f JOIN o s ON s.shopper_id = f.shopper_id AND f.k = 1 AND s.k = 2),
                       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY m) FROM (SELECT coalesce(avg(total), 0) AS m FROM o GROUP BY shopper_id) x)
                """
            ).first?.decode((Double?, Double?).self) ?? (nil, nil)
        return StoreBaseline(medianSecondOrderGapDays: gap, medianMeanValue: value)
    }

    /// Up to `limit` customers of `store` with shopper ids above `after`, in id order, summarised as of `asOf`
    /// (keyset pages over the `(store_id, shopper_id, placed_at)` index).
    public static func customers(store: String, asOf: Date, after: Int64, limit: Int, connection: PostgresConnection) throws -> [Customer] {
        try connection.query(
            """
            SELECT o.shopper_id, count(*), min(o.placed_at), max(o.placed_at), coalesce(avg(o.total), 0)
            FROM receipt_orders o
            WHERE o.store_id = \(store) AND o.shopper_id > \(after) AND \(standing(asOf))
            GROUP BY o.shopper_id ORDER BY o.shopper_id LIMIT \(limit)
            """
        ).decode((Int64, Int, Date, Date, Double).self).map { shopper, orders, first, last, meanValue in
            Customer(shopperID: shopper, summary: OrderSummary(orders: orders, firstOrderAt: first, lastOrderAt: last, meanValue: meanValue))
        }
    }

    /// Every customer of `store` as of `asOf`, a page of up to `limit` at a time in shopper order, handed to `body`.
    public static func forEachPage(
        store: String, asOf: Date, limit: Int, connection: PostgresConnection, _ body: ([Customer]) throws -> Void
    ) throws {
        var cursor: Int64 = 0
        while true {
            let page = try customers(store: store, asOf: asOf, after: cursor, limit: limit, connection: connection)
            guard let last = page.last else { return }
            try body(page)
            guard page.count == limit else { return }
            cursor = last.shopperID
        }
    }

    /// The latest standing order of each of `shoppers` as of `asOf`.
    public static func lastOrders(store: String, shoppers: [Int64], asOf: Date, connection: PostgresConnection) throws -> [Int64: Date] {
        guard !shoppers.isEmpty else { return [:] }
        var result: [Int64: Date] = [:]
        for (shopper, at) in try connection.query(
            """
            SELECT u.shopper_id, l.placed_at FROM unnest(\(PostgresArray(shoppers))::bigint[]) AS u(shopper_id)
            CROSS JOIN LATERAL (
                SELECT o.placed_at FROM receipt_orders o
                WHERE o.store_id = \(store) AND o.shopper_id = u.shopper_id AND \(standing(asOf))
                ORDER BY o.placed_at DESC LIMIT 1) l
            """
        ).decode((Int64, Date).self) {
            result[shopper] = at
        }
        return result
    }
}
