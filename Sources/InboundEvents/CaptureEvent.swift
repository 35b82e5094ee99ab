import Shared

/// A `shopper-events` message as CaptureWorker understands it: the Segment message checked against the contract's
/// per-event fields, with its email normalised.
package struct CaptureEvent: Sendable, Equatable {
    /// Consent exactly as the capture gave it.
    package struct Consent: Sendable, Equatable {
        package var marketing: Bool
        /// `single`, `confirmed` or `unknown`.
        package var level: String
        package var text: String?
        package var textVersion: String?
    }

    package enum Action: Sendable, Equatable {
        case identify(firstName: String?, lastName: String?, phone: String?, traits: [String: JSONValue])
        case emailCaptured(source: String, offerCode: String?, consent: Consent?)
        /// Double opt-in completed, with the `confirmation_token` of the `confirm_subscription` email (`properties.token`).
        case emailConfirmed(token: String?)
        case productInterest(productID: String, category: String?, added: Bool)
        case checkoutStarted(products: [String])
        case unsubscribed
        case markedAsSpam
        case bounced(hard: Bool)
        case erasureRequested
        /// Any other track event: recorded on the timeline, nothing else.
        case other(String)
    }

    package var message: SegmentMessage
    package var action: Action
    /// The normalised address the event carries, where it carries one.
    package var email: EmailAddress?

    /// The contract's capture sources.
    package static let sources: Set<String> = ["popup", "checkout", "footer", "account", "other"]
    package static let optInLevels: Set<String> = ["single", "confirmed", "unknown"]
    /// The most products a `Checkout Started` may list (as an order: ReceiptWorker's limit).
    package static let maximumProducts = 500

    /// Reads `message`.
    /// - Throws: ``DecodeFailure`` (`schema_violation`) naming the field that is missing, mistyped or invalid.
    package init(_ message: SegmentMessage) throws(DecodeFailure) {
        self.message = message
        let properties = message.properties
        let contextEmail = try EventFields.string("email", in: message.context["traits"]?.objectValue ?? [:], path: "context.traits.email")
        switch (message.kind, message.event) {
        case (.identify, _):
            let traits = message.traits
            email = try EventFields.address(try EventFields.string("email", in: traits, path: "traits.email"), path: "traits.email", required: false)
            let firstName = try EventFields.name("firstName", in: traits, path: "traits.firstName")
            let firstNameSnake = try EventFields.name("first_name", in: traits, path: "traits.first_name")
            let lastName = try EventFields.name("lastName", in: traits, path: "traits.lastName")
            let lastNameSnake = try EventFields.name("last_name", in: traits, path: "traits.last_name")
            action = .identify(
                firstName: firstName ?? firstNameSnake, lastName: lastName ?? lastNameSnake,
                phone: try EventFields.identifier("phone", in: traits, path: "traits.phone"),
                traits: traits.filter { !["email", "firstName", "lastName", "first_name", "last_name", "phone"].contains($0.key) })
        case (.track, "Email Captured"):
            email = try EventFields.address(try EventFields.string("email", in: properties, path: "properties.email"), path: "properties.email", required: true)
            let source = try EventFields.string("source", in: properties, path: "properties.source") ?? "other"
            guard Self.sources.contains(source) else {
                throw DecodeFailure(.schemaViolation, "properties.source must be one of popup, checkout, footer, account, other")
            }
            let offerCode = try EventFields.identifier("offer_code", in: properties, path: "properties.offer_code")
            var consent: Consent?
            if let value = properties["consent"], value != .null {
                guard let object = value.objectValue else {
                    throw DecodeFailure(.schemaViolation, "properties.consent must be an object, not a \(value.typeName)")
                }
                guard let marketingValue = object["marketing"], let marketing = marketingValue.boolValue else {
                    throw DecodeFailure(.schemaViolation, "properties.consent.marketing is required and must be true or false")
                }
                let level = try EventFields.string("opt_in_level", in: object, path: "properties.consent.opt_in_level") ?? "unknown"
                guard Self.optInLevels.contains(level) else {
                    throw DecodeFailure(.schemaViolation, "properties.consent.opt_in_level must be single, confirmed or unknown")
                }
                consent = Consent(
                    marketing: marketing, level: level, text: try EventFields.string("text", in: object, path: "properties.consent.text"),
                    textVersion: try EventFields.string("text_version", in: object, path: "properties.consent.text_version"))
            }
            action = .emailCaptured(source: source, offerCode: offerCode, consent: consent)
        case (.track, "Email Confirmed"):
            email = try EventFields.address(try EventFields.string("email", in: properties, path: "properties.email"), path: "properties.email", required: true)
            action = .emailConfirmed(token: try EventFields.identifier("token", in: properties, path: "properties.token"))
        case (.track, "Product Viewed"), (.track, "Product Added"):
            guard let productID = try EventFields.identifier("product_id", in: properties, path: "properties.product_id"), !productID.isEmpty else {
                throw DecodeFailure(.schemaViolation, "properties.product_id is required")
            }
            email = nil
            action = .productInterest(
                productID: productID, category: try EventFields.identifier("category", in: properties, path: "properties.category"),
                added: message.event == "Product Added")
        case (.track, "Checkout Started"):
            let propertyEmail = try EventFields.string("email", in: properties, path: "properties.email")
            email = try EventFields.address(propertyEmail ?? contextEmail, path: "properties.email", required: false)
            var products: [String] = []
            if let items = try EventFields.array("products", in: properties, path: "properties.products", limit: Self.maximumProducts) {
                for (index, item) in items.enumerated() {
                    guard let object = item.objectValue else { throw DecodeFailure(.schemaViolation, "properties.products[\(index)] must be an object") }
                    if let id = try EventFields.identifier("product_id", in: object, path: "properties.products[\(index)].product_id"), !id.isEmpty {
                        products.append(id)
                    }
                }
            }
            action = .checkoutStarted(products: products.uniqued())
        case (.track, "Unsubscribed"), (.track, "Email Marked as Spam"), (.track, "Email Bounced"):
            email = try EventFields.address(try EventFields.string("email", in: properties, path: "properties.email"), path: "properties.email", required: true)
            switch message.event {
            case "Unsubscribed": action = .unsubscribed
            case "Email Marked as Spam": action = .markedAsSpam
            default:
                let type = try EventFields.string("bounce_type", in: properties, path: "properties.bounce_type") ?? "hard"
                guard type == "hard" || type == "soft" else { throw DecodeFailure(.schemaViolation, "properties.bounce_type must be hard or soft") }
                action = .bounced(hard: type == "hard")
            }
        case (.track, "Erasure Requested"):
            let propertyEmail = try EventFields.string("email", in: properties, path: "properties.email")
            email = try EventFields.address(propertyEmail ?? contextEmail, path: "properties.email", required: false)
            action = .erasureRequested
        case (.track, let name):
            email = try EventFields.address(contextEmail, path: "context.traits.email", required: false)
            action = .other(name ?? "")
        }
    }

}
