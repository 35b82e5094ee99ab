import Foundation
import NextSale
import InboundEvents
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
            "products": .array(order.items.map { .object(["product_id": .string($0.productID), "name": $0.name.map(JSONValue.string) ?? .null, "quantity": .number(Double($0.quantity))]) }),
        ]
    }
}
