import Foundation
import InboundEvents
import NextSale
import Shared

/// The orientation journey a first order begins: the steps, when they fall due, and what each says when it is sent.
enum Journey {
    static let name = "orientation"

    /// A repeat order earns a thank-you of its own when the customer's previous order is older than this.
    static let repeatThankYouGap: TimeInterval = 30 * 86_400

    /// The steps of a first order placed at `placedAt`, delays from the store's `journey` settings.
    static func firstOrderSteps(settings: StoreSettings) -> [(EmailTemplate, Duration)] {
        let timings = settings.journey
        return [
            (.thankYou, timings.thankYou), (.surveyInvite, timings.surveyInvite), (.whyWeExist, timings.whyWeExist),
            (.nextSale, timings.nextSale), (.walkWithMe, timings.walkWithMe),
        ]
    }

    /// What a step remembers of its order until it is sent: the first name and what was bought.
    static func stepData(_ order: ReceiptEvent.Order) -> [String: JSONValue] {
        [
            "first_name": order.firstName.map(JSONValue.string) ?? .null,
            "last_name": order.lastName.map(JSONValue.string) ?? .null,
            "order_id": .string(order.orderID),
            "products": .array(
                order.items.map {
                    .object(["product_id": .string($0.productID), "name": $0.name.map(JSONValue.string) ?? .null, "quantity": .number(Double($0.quantity))])
                }),
        ]
    }

    /// The data of a thank-you for `order` that takes the place of `earlier` thank-yous still waiting: one message
    /// naming what the customer bought in all those orders (each product once, the latest order's line first), and the
    /// orders it thanks for.
    static func thankYouData(_ order: ReceiptEvent.Order, replacing earlier: [ScheduledStep]) -> [String: JSONValue] {
        var data = stepData(order)
        var seen = Set<String>()
        var products: [JSONValue] = []
        var orders: [JSONValue] = []
        for data in [data] + earlier.reversed().map(\.data) {
            for product in data["products"]?.arrayValue ?? [] where seen.insert(product["product_id"]?.stringValue ?? "").inserted {
                products.append(product)
            }
            for id in data["order_ids"]?.arrayValue ?? [data["order_id"] ?? .null] where id != .null && !orders.contains(id) { orders.append(id) }
        }
        data["products"] = .array(products)
        data["order_ids"] = .array(orders)
        return data
    }
}
