import Foundation
import InboundEvents
import Shared

/// How an order stands (`receipt_orders.status`): recorded `completed`, ended once by a refund or a cancellation.
enum OrderStatus: String, Sendable, CaseIterable {
    case completed, refunded, cancelled

    /// The statuses an order can end with, in the order their journey steps are cancelled.
    static let endings: [OrderStatus] = [.refunded, .cancelled]

    /// Why the pending journey steps of an order that ended this way are cancelled (`order_refunded`).
    var stepCancellationReason: String { "order_\(rawValue)" }
}

/// The column's text, at the SQL boundary: bound as its raw value, read back from it (an unknown text fails to decode).
extension OrderStatus: PostgresBindable, PostgresDecodable, PostgresColumnDecodable {
    func appendPostgresText(to text: inout [UInt8]) { text.append(contentsOf: rawValue.utf8) }
    init?(postgresText: String) { self.init(rawValue: postgresText) }
}

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
        var status: OrderStatus
        var placedAt: Date
    }

    /// The orders of `keys` recorded already: one primary-key probe each.
    static func recorded(_ keys: Set<Key>, connection: PostgresConnection) throws -> [Key: Recorded] {
        guard !keys.isEmpty else { return [:] }
        let list = Array(keys)
        var found: [Key: Recorded] = [:]
        for (store, order, shopper, status, placedAt) in try connection.query(
            """
            SELECT u.store_id, u.order_id, o.shopper_id, o.status, o.placed_at
            FROM unnest(\(PostgresArray(list.map(\.storeID)))::text[], \(PostgresArray(list.map(\.orderID)))::text[]) AS u(store_id, order_id)
            CROSS JOIN LATERAL (
                SELECT o.shopper_id, o.status, o.placed_at FROM receipt_orders o WHERE o.store_id = u.store_id AND o.order_id = u.order_id
                OFFSET 0) o  -- a probe per key, never a flattened join (see PurchaseHistory.load)
            """
        ).decode((String, String, Int64?, OrderStatus, Date).self) {
            found[Key(storeID: store, orderID: order)] = Recorded(shopperID: shopper, status: status, placedAt: placedAt)
        }
        return found
    }

    /// Records new orders with their items, each with the status the batch ended with.
    /// - Throws: A retriable ``PostgresError`` when another transaction recorded one of them meanwhile (the same order
    ///   under two message ids on two partitions): the batch runs again and finds it recorded.
    static func insert(
        _ orders: [(event: ReceiptEvent, order: ReceiptEvent.Order, shopperID: Int64, status: OrderStatus, endedAt: Date?)], connection: PostgresConnection
    ) throws {
        guard !orders.isEmpty else { return }
        let sorted = orders.sorted { ($0.event.message.storeID, $0.order.orderID) < ($1.event.message.storeID, $1.order.orderID) }
        let inserted = try connection.query(
            .insert(
                into: "receipt_orders", sorted,
                [
                    .init("store_id", "text", \.event.message.storeID), .init("order_id", "text", \.order.orderID),
                    .init("shopper_key", "text", \.event.message.shopperKey), .init("currency", "text", \.order.currency), .init("status", "text", \.status),
                    .init("placed_at", "timestamptz", \.event.message.timestamp), .init("message_id", "text", \.event.message.messageID),
                    .init("user_id", "text", \.event.message.userID), .init("anonymous_id", "text", \.event.message.anonymousID),
                    .init("email", "text") { $0.order.email?.value }, .init("first_name", "text", \.order.firstName),
                    .init("last_name", "text", \.order.lastName), .init("locale", "text") { $0.event.message.context["locale"]?.stringValue },
                    .init("subtotal", "bigint", \.order.subtotal.minorUnits), .init("tax", "bigint") { $0.order.tax?.minorUnits },
                    .init("shipping", "bigint") { $0.order.shipping?.minorUnits }, .init("discount", "bigint") { $0.order.discount?.minorUnits },
                    .init("total", "bigint", \.order.total.minorUnits), .init("coupon", "text", \.order.coupon), .init("ended_at", "timestamptz", \.endedAt),
                    .init("shopper_id", "bigint", \.shopperID),
                ],
                then: """
                    ON CONFLICT (store_id, order_id) DO NOTHING
                    RETURNING order_id
                    """)
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
            .insert(
                into: "receipt_order_items", items,
                [
                    .init("store_id", "text", \.store), .init("order_id", "text", \.order), .init("line", "integer", \.line),
                    .init("product_id", "text", \.item.productID), .init("category", "text", \.item.category), .init("quantity", "integer", \.item.quantity),
                    .init("unit_price", "bigint") { $0.item.unitPrice?.minorUnits }, .init("name", "text", \.item.name), .init("sku", "text", \.item.sku),
                    .init("brand", "text", \.item.brand), .init("variant", "text", \.item.variant), .init("url", "text", \.item.url),
                    .init("image_url", "text", \.item.imageURL),
                ]))
    }

    /// Marks recorded orders refunded or cancelled.
    static func end(_ ended: [(key: Key, status: OrderStatus, at: Date)], connection: PostgresConnection) throws {
        guard !ended.isEmpty else { return }
        let sorted = ended.sorted { ($0.key.storeID, $0.key.orderID) < ($1.key.storeID, $1.key.orderID) }
        try connection.execute(
            """
            UPDATE receipt_orders o SET status = u.status, ended_at = u.ended_at
            FROM unnest(
                \(PostgresArray(sorted.map(\.key.storeID)))::text[], \(PostgresArray(sorted.map(\.key.orderID)))::text[], \(PostgresArray(sorted.map(\.status)))::text[],
                \(PostgresArray(sorted.map(\.at)))::timestamptz[]) AS u(store_id, order_id, status, ended_at)
            WHERE o.store_id = u.store_id AND o.order_id = u.order_id AND o.status = 'completed'
            """)
    }
}
