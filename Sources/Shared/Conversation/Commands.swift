import Foundation

/// The contract's `SendEmail` command (topic `email-commands`).
public enum EmailCommand {
    /// A `SendEmail` of `template` to `email`, caused by `causationID`: its id is deterministic, `created_at` is the
    /// moment of the decision (the causing event's time), so the same input always yields the same bytes.
    ///
    /// `data` is the template's personalisation; the store's sender, footer address, brand story and channels are
    /// added under `data.store`. Marketing carries the contact's `unsubscribe_token`.
    public static func make(
        template: EmailTemplate, storeID: String, causationID: String, key: String, email: String, name: String?, locale: String,
        settings: StoreSettings, data: [String: JSONValue], unsubscribeToken: String?, createdAt: Date, topic: String
    ) -> OutboundCommand {
        let id = CommandID.make(store: storeID, causation: causationID, name: template.name)
        var data = data
        data["store"] = settings.brandContent
        var body: [String: JSONValue] = [
            "command_id": .string(id), "type": .string("SendEmail"), "store_id": .string(storeID), "template": .string(template.name),
            "category": .string(template.category.rawValue), "to": .object(["email": .string(email), "name": name.map(JSONValue.string) ?? .null]),
            "from": .object(["email": .string(settings.senderEmail), "name": .string(settings.senderName)]),
            "locale": .string(locale), "data": .object(data), "causation_id": .string(causationID), "created_at": .string(createdAt.rfc3339),
        ]
        if template.category == .marketing, let unsubscribeToken { body["unsubscribe_token"] = .string(unsubscribeToken) }
        return OutboundCommand(
            topic: topic, key: key, name: template.name, storeID: storeID, causationID: causationID, value: JSONValue.object(body).encoded())
    }
}

/// The contract's `RecommendProducts` command (topic `recommendation-commands`).
public enum RecommendationCommand {
    /// A `RecommendProducts` in `context` (`browse`, `next_sale`, …) for the shopper, caused by `causationID`.
    public static func make(
        context: String, storeID: String, causationID: String, key: String, userID: String?, anonymousID: String?, email: String?,
        products: [JSONValue], createdAt: Date, topic: String
    ) -> OutboundCommand {
        let id = CommandID.make(store: storeID, causation: causationID, name: "recommend:\(context)")
        let body: [String: JSONValue] = [
            "command_id": .string(id), "type": .string("RecommendProducts"), "store_id": .string(storeID),
            "shopper": .object([
                "user_id": userID.map(JSONValue.string) ?? .null, "anonymous_id": anonymousID.map(JSONValue.string) ?? .null,
                "email": email.map(JSONValue.string) ?? .null,
            ]),
            "context": .string(context), "products": .array(products), "causation_id": .string(causationID),
            "created_at": .string(createdAt.rfc3339),
        ]
        return OutboundCommand(
            topic: topic, key: key, name: "recommend:\(context)", storeID: storeID, causationID: causationID, value: JSONValue.object(body).encoded())
    }
}

extension StoreSettings {
    /// What every email carries about the store: sender, footer address, brand story, channels, loyalty programme.
    var brandContent: JSONValue {
        func links(_ links: [Link]) -> JSONValue { .array(links.map { .object(["name": .string($0.name), "url": .string($0.url)]) }) }
        return .object([
            "sender": .object(["name": .string(senderName), "email": .string(senderEmail)]),
            "postal_address": .string(postalAddress), "brand_story": .string(brandStory),
            "social_links": links(socialLinks), "event_links": links(eventLinks),
            "loyalty_programme": loyaltyProgramme.map { .object(["name": .string($0.name), "url": .string($0.url)]) } ?? .null,
        ])
    }
}
