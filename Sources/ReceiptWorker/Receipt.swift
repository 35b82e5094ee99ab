import Foundation
import InboundEvents
import NextSale
import Shared

/// The bountiful receipt's `data` (CONTRACT.md): the receipt first — items, quantities, amounts as decimal strings in
/// the currency's minor units, each also formatted for the locale — then the store's introduction.
enum Receipt {
    static func data(_ order: ReceiptEvent.Order, placedAt: Date, locale: String, settings: StoreSettings) -> [String: JSONValue] {
        func amount(_ name: String, _ money: Money?, into data: inout [String: JSONValue]) {
            data[name] = money.map { .string($0.text) } ?? .null
            data[name + "_formatted"] = money.map { .string($0.formatted(locale: locale)) } ?? .null
        }
        let items: [JSONValue] = order.items.map { item in
            var line: [String: JSONValue] = [
                "product_id": .string(item.productID), "name": item.name.map(JSONValue.string) ?? .null, "quantity": .number(Double(item.quantity)),
                "sku": item.sku.map(JSONValue.string) ?? .null, "variant": item.variant.map(JSONValue.string) ?? .null,
                "url": item.url.map(JSONValue.string) ?? .null, "image_url": item.imageURL.map(JSONValue.string) ?? .null,
            ]
            amount("unit_price", item.unitPrice, into: &line)
            amount("line_total", item.lineTotal, into: &line)
            return .object(line)
        }
        var data: [String: JSONValue] = [
            "order_id": .string(order.orderID), "items": .array(items), "currency": .string(order.currency),
            "coupon": order.coupon.map(JSONValue.string) ?? .null, "placed_at": .string(placedAt.rfc3339),
        ]
        amount("subtotal", order.subtotal, into: &data)
        amount("tax", order.tax, into: &data)
        amount("shipping", order.shipping, into: &data)
        amount("discount", order.discount, into: &data)
        amount("total", order.total, into: &data)
        data["introduction"] = introduction(settings)
        return data
    }

    /// After the receipt, the store introduces itself: the opening of its story, and where to find it.
    static func introduction(_ settings: StoreSettings) -> JSONValue {
        let story = settings.brandStory
        let teaser = story.split(separator: ".", maxSplits: 1).first.map { String($0) + (story.contains(".") ? "." : "") } ?? ""
        let links = (settings.socialLinks + settings.eventLinks + (settings.loyaltyProgramme.map { [$0] } ?? []))
            .map { JSONValue.object(["name": .string($0.name), "url": .string($0.url)]) }
        return .object(["brand_story_teaser": .string(teaser), "links": .array(links), "signature": .string(settings.signature ?? settings.senderName)])
    }

    /// The contract's `products` of a recommendation command.
    static func products(_ recommendations: [Recommendation]) -> [JSONValue] {
        recommendations.map(\.json)
    }
}
