import Foundation
import Shared

/// A `checkout-events` message as ReceiptWorker understands it: the Segment message checked against the contract's
/// order fields, amounts in the currency's minor units.
package struct ReceiptEvent: Sendable, Equatable {
    package struct Item: Sendable, Equatable {
        package var productID: String
        package var sku: String?
        package var name: String?
        package var category: String?
        package var brand: String?
        package var variant: String?
        package var unitPrice: Money?
        package var quantity: Int
        package var url: String?
        package var imageURL: String?

        /// `unitPrice × quantity`, checked at decode.
        package var lineTotal: Money?
    }

    package struct Order: Sendable, Equatable {
        package var orderID: String
        package var currency: String
        package var items: [Item]
        package var subtotal: Money
        package var tax: Money?
        package var shipping: Money?
        package var discount: Money?
        package var total: Money
        package var coupon: String?
        /// The buyer's address: `properties.email`, else `context.traits.email`.
        package var email: EmailAddress?
        package var firstName: String?
        package var lastName: String?
    }

    package enum Action: Sendable, Equatable {
        case completed(Order)
        case refunded(orderID: String)
        case cancelled(orderID: String)
        /// Any other track event on the topic: normal traffic, skipped and counted.
        case other(String)
    }

    package var message: SegmentMessage
    package var action: Action

    /// The most products one order may list: an order of more is refused (`schema_violation`), so that one message
    /// cannot make the purchase model count a quadratic number of pairs. Shopify allows 500 line items.
    package static let maximumProducts = 500

    /// The identities that resolve the buyer to the shared shopper (``ShopperResolver``): the userId, the anonymousId
    /// and the order's address — an address is steadier than a device's anonymous id, and a guest's next order carries
    /// the same one.
    package var identities: [ShopperIdentity] {
        let email: EmailAddress? = if case .completed(let order) = action { order.email } else { nil }
        return ShopperIdentity.carried(by: message, email: email)
    }

    /// Reads `message`.
    /// - Throws: ``DecodeFailure`` (`schema_violation`) naming the field that is missing, mistyped or invalid.
    package init(_ message: SegmentMessage) throws(DecodeFailure) {
        self.message = message
        let properties = message.properties
        func orderID() throws(DecodeFailure) -> String {
            guard let id = try EventFields.identifier("order_id", in: properties, path: "properties.order_id"), !id.isEmpty else {
                throw DecodeFailure(.schemaViolation, "properties.order_id is required")
            }
            return id
        }
        switch (message.kind, message.event) {
        case (.track, "Order Completed"):
            action = .completed(try Self.order(message, orderID: try orderID()))
        case (.track, "Order Refunded"):
            action = .refunded(orderID: try orderID())
        case (.track, "Order Cancelled"):
            action = .cancelled(orderID: try orderID())
        case (_, let name):
            action = .other(name ?? message.kind.rawValue)
        }
    }

    private static func order(_ message: SegmentMessage, orderID: String) throws(DecodeFailure) -> Order {
        let properties = message.properties
        guard let currencyText = try EventFields.string("currency", in: properties, path: "properties.currency") else {
            throw DecodeFailure(.schemaViolation, "properties.currency is required")
        }
        let currency = currencyText.uppercased()
        guard Money.isCurrencyCode(currency), LocaleCatalog.isKnown(currency: currency) else {
            throw DecodeFailure(.schemaViolation, "properties.currency must be an ISO 4217 code Foundation knows (EUR, JPY, …)")
        }
        func money(_ key: String, in object: [String: JSONValue], path: String) throws(DecodeFailure) -> Money? {
            guard let value = object[key], value != .null else { return nil }
            let money: Money? =
                if let number = value.numberValue { Money(number, currency: currency) } else if let text = value.stringValue {
                    Money(decimalText: text, currency: currency)
                } else { nil }
            guard let money else {
                if value.numberValue != nil || value.stringValue != nil {
                    throw DecodeFailure(
                        .schemaViolation, "\(path) must be a decimal amount within ±\(Money(minorUnits: Money.maximumMinorUnits, currency: currency).text)")
                }
                throw DecodeFailure(.schemaViolation, "\(path) must be a number, not a \(value.typeName)")
            }
            return money
        }
        func sum(_ amounts: [Money?], path: String) throws(DecodeFailure) -> Money {
            var total = Money(minorUnits: 0, currency: currency)
            for amount in amounts {
                guard let amount else { continue }
                guard let next = total.adding(amount) else {
                    throw DecodeFailure(.schemaViolation, "\(path) is out of range: the amounts add up to more than the largest amount kept")
                }
                total = next
            }
            return total
        }
        var items: [Item] = []
        if let array = try EventFields.array("products", in: properties, path: "properties.products", limit: maximumProducts) {
            items.reserveCapacity(array.count)
            for (index, element) in array.enumerated() {
                let path = "properties.products[\(index)]"
                guard let product = element.objectValue else { throw DecodeFailure(.schemaViolation, "\(path) must be an object") }
                guard let productID = try EventFields.identifier("product_id", in: product, path: "\(path).product_id"), !productID.isEmpty else {
                    throw DecodeFailure(.schemaViolation, "\(path).product_id is required")
                }
                var quantity = 1
                if let value = product["quantity"], value != .null {
                    guard let number = value.numberValue, number == number.rounded(), number >= 1, number <= 1_000_000 else {
                        throw DecodeFailure(.schemaViolation, "\(path).quantity must be a whole number from 1 to 1,000,000")
                    }
                    quantity = Int(number)
                }
                let unitPrice = try money("price", in: product, path: "\(path).price")
                var lineTotal: Money?
                if let unitPrice {
                    guard let total = unitPrice.multiplied(by: quantity) else {
                        throw DecodeFailure(.schemaViolation, "\(path): price × quantity is out of range")
                    }
                    lineTotal = total
                }
                items.append(
                    Item(
                        productID: productID, sku: try EventFields.identifier("sku", in: product, path: "\(path).sku"),
                        name: try EventFields.string("name", in: product, path: "\(path).name", maximumBytes: 1000),
                        category: try EventFields.identifier("category", in: product, path: "\(path).category"),
                        brand: try EventFields.identifier("brand", in: product, path: "\(path).brand"),
                        variant: try EventFields.identifier("variant", in: product, path: "\(path).variant"),
                        unitPrice: unitPrice, quantity: quantity,
                        url: try EventFields.string("url", in: product, path: "\(path).url", maximumBytes: 2048),
                        imageURL: try EventFields.string("image_url", in: product, path: "\(path).image_url", maximumBytes: 2048), lineTotal: lineTotal))
            }
        }
        let givenSubtotal = try money("subtotal", in: properties, path: "properties.subtotal")
        let subtotal: Money
        if let givenSubtotal { subtotal = givenSubtotal } else { subtotal = try sum(items.map(\.lineTotal), path: "properties.products") }
        let tax = try money("tax", in: properties, path: "properties.tax")
        let shipping = try money("shipping", in: properties, path: "properties.shipping")
        let discount = try money("discount", in: properties, path: "properties.discount")
        let revenue = try money("revenue", in: properties, path: "properties.revenue")
        // A discount is taken off whichever sign it is sent with (Segment sends it positive).
        let beforeDiscount = try sum([subtotal, tax, shipping], path: "properties.subtotal + tax + shipping")
        guard let computed = beforeDiscount.subtracting(Money(minorUnits: abs(discount?.minorUnits ?? 0), currency: currency)) else {
            throw DecodeFailure(.schemaViolation, "properties.discount is out of range")
        }
        let traits = message.context["traits"]?.objectValue ?? [:]
        let propertyEmail = try EventFields.string("email", in: properties, path: "properties.email")
        let contextEmail = try EventFields.string("email", in: traits, path: "context.traits.email")
        let firstName = try EventFields.name("firstName", in: traits, path: "context.traits.firstName")
        let firstNameSnake = try EventFields.name("first_name", in: traits, path: "context.traits.first_name")
        let lastName = try EventFields.name("lastName", in: traits, path: "context.traits.lastName")
        let lastNameSnake = try EventFields.name("last_name", in: traits, path: "context.traits.last_name")
        return Order(
            orderID: orderID, currency: currency, items: items, subtotal: subtotal, tax: tax, shipping: shipping, discount: discount,
            total: try money("total", in: properties, path: "properties.total") ?? revenue ?? computed,
            coupon: try EventFields.identifier("coupon", in: properties, path: "properties.coupon"),
            email: try EventFields.address(
                propertyEmail ?? contextEmail, path: propertyEmail != nil ? "properties.email" : "context.traits.email", required: false),
            firstName: firstName ?? firstNameSnake, lastName: lastName ?? lastNameSnake)
    }
}
