import Foundation
import InboundEvents
import Shared

/// ReceiptWorker's orders (`receipt_orders`, `receipt_order_items`): what a batch reads and writes about them.
enum OrderStore {
    /// An order's key: `order_id` is unique within a store.
    struct Key: Hashable {
        var storeID: String
        var orderID: String
    }

    /// What the batch needs to know of an order recorded already.
    struct Recorded: Equatable {
        /// Its shared shopper; `nil` once erased.
        var shopperID: Int64?
        var status: String
        var placedAt: Date
    }

    /// The orders of `keys` recorded already: one primary-key probe each.
    static func recorded(_ keys: Set<Key>, connection: PostgresConnection) throws -> [Key: Recorded] {
        guard !keys.isEmpty else { return [:] }
        let list = Array(keys)
        var found: [Key: Recorded] = [:]
        for row in try connection.query(
            """
            SELECT u.store_id, u.order_id, o.shopper_id, o.status, o.placed_at
            FROM unnest($1::text[], $2::text[]) AS u(store_id, order_id)
            CROSS JOIN LATERAL (
                SELECT o.shopper_id, o.status, o.placed_at FROM receipt_orders o WHERE o.store_id = u.store_id AND o.order_id = u.order_id
                OFFSET 0) o  -- a probe per key, never a flattened join (see PurchaseHistory.load)
            """, [PostgresArray(list.map(\.storeID)), PostgresArray(list.map(\.orderID))])
        {
            guard let store = try row.decode(String.self, "store_id"), let order = try row.decode(String.self, "order_id"),
                let status = try row.decode(String.self, "status"),
                let placedAt = try row.decode(Date.self, "placed_at")
            else { continue }
            found[Key(storeID: store, orderID: order)] = Recorded(shopperID: try row.decode(Int64.self, "shopper_id"), status: status, placedAt: placedAt)
        }
        return found
    }

    /// Records new orders with their items, each with the status the batch ended with.
    /// - Throws: A retriable ``PostgresError`` when another transaction recorded one of them meanwhile (the same order
    ///   under two message ids on two partitions): the batch runs again and finds it recorded.
    static func insert(
        _ orders: [(event: ReceiptEvent, order: ReceiptEvent.Order, shopperID: Int64, status: String, endedAt: Date?)], connection: PostgresConnection
    ) throws {
        guard !orders.isEmpty else { return }
        let sorted = orders.sorted { ($0.event.message.storeID, $0.order.orderID) < ($1.event.message.storeID, $1.order.orderID) }
        func optional<T: PostgresBindable>(_ values: [T?]) -> PostgresArray { PostgresArray(values as [(any PostgresBindable)?]) }
        let inserted = try connection.query(
            """
            INSERT INTO receipt_orders (store_id, order_id, shopper_key, currency, status, placed_at, message_id, user_id, anonymous_id, email,
                                        first_name, last_name, locale, subtotal, tax, shipping, discount, total, coupon, ended_at, shopper_id)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::text[],
                                 $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],
                                 $18::bigint[], $19::text[], $20::timestamptz[], $21::bigint[])
            ON CONFLICT (store_id, order_id) DO NOTHING
            RETURNING order_id
            """,
            [
                PostgresArray(sorted.map(\.event.message.storeID)), PostgresArray(sorted.map(\.order.orderID)), PostgresArray(sorted.map(\.event.message.shopperKey)),
                PostgresArray(sorted.map(\.order.currency)), PostgresArray(sorted.map(\.status)), PostgresArray(sorted.map(\.event.message.timestamp)),
                PostgresArray(sorted.map(\.event.message.messageID)), optional(sorted.map(\.event.message.userID)),
                optional(sorted.map(\.event.message.anonymousID)), optional(sorted.map { $0.order.email?.value }), optional(sorted.map(\.order.firstName)),
                optional(sorted.map(\.order.lastName)), optional(sorted.map { $0.event.message.context["locale"]?.stringValue }),
                PostgresArray(sorted.map(\.order.subtotal.minorUnits)), optional(sorted.map { $0.order.tax?.minorUnits }),
                optional(sorted.map { $0.order.shipping?.minorUnits }), optional(sorted.map { $0.order.discount?.minorUnits }),
                PostgresArray(sorted.map(\.order.total.minorUnits)), optional(sorted.map(\.order.coupon)), optional(sorted.map(\.endedAt)),
                PostgresArray(sorted.map(\.shopperID)),
            ]
        ).count
        guard inserted == sorted.count else {
            throw PostgresError(
                code: .server, sqlState: "40001",
                message: "\(sorted.count - inserted) of the batch's orders were recorded meanwhile by another transaction; the batch runs again")
        }
        var items: [(store: String, order: String, line: Int, item: ReceiptEvent.Item)] = []
        for entry in sorted {
            for (line, item) in entry.order.items.enumerated() { items.append((entry.event.message.storeID, entry.order.orderID, line + 1, item)) }
        }
        guard !items.isEmpty else { return }
        try connection.execute(
            """
            INSERT INTO receipt_order_items (store_id, order_id, line, product_id, category, quantity, unit_price, name, sku, brand, variant, url, image_url)
            SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::integer[], $7::bigint[], $8::text[], $9::text[],
                                 $10::text[], $11::text[], $12::text[], $13::text[])
            """,
            [
                PostgresArray(items.map(\.store)), PostgresArray(items.map(\.order)), PostgresArray(items.map(\.line)),
                PostgresArray(items.map(\.item.productID)), optional(items.map(\.item.category)), PostgresArray(items.map(\.item.quantity)),
                optional(items.map { $0.item.unitPrice?.minorUnits }), optional(items.map(\.item.name)), optional(items.map(\.item.sku)),
                optional(items.map(\.item.brand)), optional(items.map(\.item.variant)), optional(items.map(\.item.url)), optional(items.map(\.item.imageURL)),
            ])
    }

    /// Marks recorded orders refunded or cancelled.
    static func end(_ ended: [(key: Key, status: String, at: Date)], connection: PostgresConnection) throws {
        guard !ended.isEmpty else { return }
        let sorted = ended.sorted { ($0.key.storeID, $0.key.orderID) < ($1.key.storeID, $1.key.orderID) }
        try connection.execute(
            """
            UPDATE receipt_orders o SET status = u.status, ended_at = u.ended_at
            FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS u(store_id, order_id, status, ended_at)
            WHERE o.store_id = u.store_id AND o.order_id = u.order_id AND o.status = 'completed'
            """,
            [PostgresArray(sorted.map(\.key.storeID)), PostgresArray(sorted.map(\.key.orderID)), PostgresArray(sorted.map(\.status)), PostgresArray(sorted.map(\.at))])
    }
}
