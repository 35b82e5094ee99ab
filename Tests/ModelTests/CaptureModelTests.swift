import Foundation
import InboundEvents
import Shared
import Testing

@testable import CaptureWorker

/// The capture rules, applied in memory to one shopper with one address (the handler resolves identities and loads
/// state; these tests feed the model directly).
@Suite struct CaptureModelTests {
    static let store = "shop"
    static let email = "ana@example.com"
    static let start = Date(timeIntervalSince1970: 1_795_586_400)  // 2026-11-25T06:00:00Z

    /// A model holding shopper 1 with `email`'s contact (id 7).
    static func model(_ settings: StoreSettings = StoreSettings(), topics: Topics = Topics(), processedAt: Date = start) -> CaptureModel {
        var shopper = ShopperState(shopperID: 1, storeID: store)
        shopper.anonymousID = "anon-1"
        let contact = ContactState(contactID: 7, storeID: store, email: email, unsubscribeToken: "unsub-token")
        var directory = StoreDirectory()
        if settings != StoreSettings() {
            directory = try! StoreDirectory(json: Array(settingsJSON(settings).utf8), setting: "TEST")
        }
        return CaptureModel(
            stores: directory, topics: topics, shoppers: [1: shopper],
            contacts: [.init(storeID: store, email: email): contact], processedAt: processedAt, makeToken: { "token-1" })
    }

    static func settingsJSON(_ settings: StoreSettings) -> String {
        #"{"defaults": {"double_opt_in": \#(settings.doubleOptIn), "soft_opt_in": \#(settings.softOptIn), "keep_erasure_hash": \#(settings.keepErasureHash)}}"#
    }

    /// A track event `name` with `properties`, `minutes` after ``start``.
    static func track(_ name: String, _ properties: [String: JSONValue] = [:], minutes: Double = 0, id: String? = nil) -> CaptureEvent {
        var message = SegmentMessage(
            kind: .track, messageID: id ?? "m-\(name)-\(minutes)", timestamp: start.addingTimeInterval(minutes * 60), userID: nil, anonymousID: "anon-1",
            storeID: store, event: name, properties: properties, traits: [:], context: ["ip": .string("203.0.113.9"), "userAgent": .string("UA/1")])
        message.properties = properties
        return try! CaptureEvent(message)
    }

    static func capture(
        marketing: Bool?, level: String = "single", offer: String? = "WELCOME10", source: String = "popup", minutes: Double = 0, id: String? = nil
    ) -> CaptureEvent {
        var properties: [String: JSONValue] = ["email": .string(email), "source": .string(source)]
        if let offer { properties["offer_code"] = .string(offer) }
        if let marketing {
            properties["consent"] = .object([
                "marketing": .bool(marketing), "opt_in_level": .string(level), "text": .string("Yes, email me"), "text_version": .string("3"),
            ])
        }
        return track("Email Captured", properties, minutes: minutes, id: id)
    }

    static func templates(_ model: CaptureModel) -> [String] {
        model.commands.filter { $0.topic == "email-commands" }.map(\.name)
    }

    static func body(_ command: OutboundCommand) throws -> [String: JSONValue] {
        try #require(try JSONValue.parse(command.value[...]).objectValue)
    }

    @Test func aPopupCaptureWithConsentRecordsTheLedgerAndSendsOnePersonalWelcome() throws {
        var model = Self.model()
        model.apply(Self.track("Product Viewed", ["product_id": .string("p-9")], minutes: -5), shopperID: 1)
        model.apply(Self.capture(marketing: true), shopperID: 1)
        #expect(Self.templates(model) == ["welcome_offer"])
        let welcome = try #require(model.commands.first { $0.name == "welcome_offer" })
        let body = try Self.body(welcome)
        #expect(body["category"] == .string("marketing"))
        #expect(body["to"]?["email"] == .string(Self.email))
        #expect(body["unsubscribe_token"] == .string("unsub-token"))
        #expect(body["data"]?["offer_code"] == .string("WELCOME10"))
        #expect(body["data"]?["viewed_products"] == .array([.string("p-9")]), "what was viewed before capture counts")
        #expect(body["command_id"] == .string(welcome.id))
        let consent = try #require(model.ledger.first)
        #expect(consent.kind == "consent" && consent.marketing == true && consent.optInLevel == "single")
        #expect(consent.consentText == "Yes, email me" && consent.textVersion == "3" && consent.ip == "203.0.113.9" && consent.userAgent == "UA/1")
        #expect(model.contacts.values.first?.permission.marketing == true)
        #expect(model.decisions.map(\.decision) == [.send])
    }

    @Test func aSecondCaptureNeverSendsASecondWelcome() {
        var model = Self.model()
        model.apply(Self.capture(marketing: true, id: "a"), shopperID: 1)
        model.apply(Self.capture(marketing: true, minutes: 60 * 48, id: "b"), shopperID: 1)
        #expect(Self.templates(model) == ["welcome_offer"])
        #expect(model.decisions.last?.decision == .dropped(reason: "welcome_already_offered"))
    }

    @Test func withoutMarketingConsentThereIsNoWelcome() {
        var model = Self.model()
        model.apply(Self.capture(marketing: false), shopperID: 1)
        model.apply(Self.capture(marketing: nil, minutes: 1), shopperID: 1)
        #expect(Self.templates(model).isEmpty)
        #expect(model.contacts.values.first?.permission.transactional == true)
        #expect(model.contacts.values.first?.permission.marketing == false)
        #expect(
            model.decisions.map(\.decision) == [.suppressed(reason: "no_marketing_consent"), .suppressed(reason: "no_marketing_consent")],
            "a capture with an offer code that earns no welcome records why")
    }

    @Test(arguments: ["popup", "footer", "checkout", "account", "other"])
    func anOfferCodeFromAnyFormEarnsTheWelcomeOncePerShopper(source: String) {
        var model = Self.model()
        model.apply(Self.capture(marketing: true, source: source, id: "a"), shopperID: 1)
        model.apply(Self.capture(marketing: true, source: "footer", minutes: 5, id: "b"), shopperID: 1)
        #expect(Self.templates(model) == ["welcome_offer"], "the form promised an offer for the address, whichever form it was")
        #expect(model.decisions.last?.decision == .dropped(reason: "welcome_already_offered"))
    }

    @Test func doubleOptInSendsAConfirmationAndHoldsTheWelcomeUntilConfirmed() throws {
        var settings = StoreSettings()
        settings.doubleOptIn = true
        var model = Self.model(settings)
        model.apply(Self.capture(marketing: true), shopperID: 1)
        #expect(Self.templates(model) == ["confirm_subscription"])
        let confirm = try Self.body(try #require(model.commands.first))
        #expect(confirm["category"] == .string("transactional"))
        #expect(confirm["data"]?["confirmation_token"] == .string("token-1"))
        #expect(confirm["unsubscribe_token"] == nil, "transactional mail carries no unsubscribe token")
        #expect(model.contacts.values.first?.permission.marketing == false)
        #expect(model.decisions.last?.decision.name == "deferred")
        model.apply(Self.track("Email Confirmed", ["email": .string(Self.email), "token": .string("forged")], minutes: 20), shopperID: 1)
        #expect(Self.templates(model) == ["confirm_subscription"], "a token the worker did not issue confirms nothing")
        #expect(model.decisions.last?.decision == .dropped(reason: "confirmation_token_mismatch"))
        model.apply(Self.track("Email Confirmed", ["email": .string(Self.email)], minutes: 25), shopperID: 1)
        #expect(Self.templates(model) == ["confirm_subscription"], "nor does a confirmation without a token")
        #expect(model.contacts.values.first?.permission.marketing == false)
        model.apply(Self.track("Email Confirmed", ["email": .string(Self.email), "token": .string("token-1")], minutes: 30), shopperID: 1)
        #expect(Self.templates(model) == ["confirm_subscription", "welcome_offer"])
        #expect(model.contacts.values.first?.consentLevel == "confirmed")
    }

    @Test func consentWithdrawnBeforeConfirmationMeansTheHeldWelcomeIsNeverSent() {
        var settings = StoreSettings()
        settings.doubleOptIn = true
        var model = Self.model(settings)
        model.apply(Self.capture(marketing: true), shopperID: 1)
        model.apply(Self.track("Unsubscribed", ["email": .string(Self.email)], minutes: 10), shopperID: 1)
        model.apply(Self.track("Email Confirmed", ["email": .string(Self.email), "token": .string("token-1")], minutes: 20), shopperID: 1)
        #expect(Self.templates(model) == ["confirm_subscription"])
        #expect(model.decisions.contains { $0.name == EmailTemplate.welcomeOffer.name && $0.decision == .suppressed(reason: "unsubscribed") })
    }

    @Test func emailFirstCheckoutIsTransactionalOnlyUnlessTheStoreUsesSoftOptIn() {
        var model = Self.model()
        model.apply(Self.track("Checkout Started", ["email": .string(Self.email)]), shopperID: 1)
        #expect(model.contacts.values.first?.permission == ContactPermission(transactional: true, marketing: false))
        var settings = StoreSettings()
        settings.softOptIn = true
        var soft = Self.model(settings)
        soft.apply(Self.track("Checkout Started", ["email": .string(Self.email)]), shopperID: 1)
        #expect(soft.contacts.values.first?.permission.marketing == true)
        #expect(soft.contacts.values.first?.consentLevel == "soft")
    }

    @Test func spamEndsMarketingAndAHardBounceEndsAllMail() {
        var model = Self.model()
        model.apply(Self.capture(marketing: true, offer: nil), shopperID: 1)
        model.apply(Self.track("Email Marked as Spam", ["email": .string(Self.email)], minutes: 1), shopperID: 1)
        #expect(model.contacts.values.first?.permission.suppression == .marketing)
        #expect(model.contacts.values.first?.permission.marketing == false)
        model.apply(Self.track("Email Bounced", ["email": .string(Self.email), "bounce_type": .string("hard")], minutes: 2), shopperID: 1)
        #expect(model.contacts.values.first?.permission.suppression == .all)
        #expect(model.contacts.values.first?.permission.transactional == false)
    }

    @Test func sevenSoftBouncesInARowActAsAHardOne() {
        var model = Self.model()
        model.apply(Self.capture(marketing: true, offer: nil), shopperID: 1)
        for index in 1...6 {
            model.apply(
                Self.track("Email Bounced", ["email": .string(Self.email), "bounce_type": .string("soft")], minutes: Double(index), id: "b\(index)"),
                shopperID: 1)
        }
        #expect(model.contacts.values.first?.permission.suppression == nil)
        model.apply(Self.track("Email Bounced", ["email": .string(Self.email), "bounce_type": .string("soft")], minutes: 7, id: "b7"), shopperID: 1)
        #expect(model.contacts.values.first?.permission.suppression == .all)
    }

    @Test func browseRecommendationsAtMostOncePerWindow() throws {
        var model = Self.model()
        model.apply(Self.track("Product Viewed", ["product_id": .string("p-1"), "category": .string("shoes")], minutes: 0), shopperID: 1)
        model.apply(Self.track("Product Added", ["product_id": .string("p-2")], minutes: 5), shopperID: 1)
        model.apply(Self.track("Product Viewed", ["product_id": .string("p-3")], minutes: 60 * 25), shopperID: 1)
        let recommendations = model.commands.filter { $0.topic == "recommendation-commands" }
        #expect(recommendations.count == 2)
        #expect(model.recommendations.map(\.commandID) == recommendations.map(\.id), "each recorded for the shopper's timeline")
        let last = try Self.body(try #require(recommendations.last))
        #expect(last["context"] == .string("browse"))
        #expect(last["products"]?.arrayValue?.compactMap { $0["product_id"]?.stringValue } == ["p-3", "p-2", "p-1"])
        let product = CaptureModel.InterestKey(storeID: Self.store, shopperID: 1, kind: "product", item: "p-1")
        #expect(model.interests[product]?.views == 1)
        #expect(model.interests[.init(storeID: Self.store, shopperID: 1, kind: "category", item: "shoes")]?.views == 1)
        #expect(model.interests[.init(storeID: Self.store, shopperID: 1, kind: "product", item: "p-2")]?.adds == 1)
    }

    @Test func browseEventsArrivingOutOfOrderStillGetOneRecommendationPerWindow() {
        var model = Self.model()
        // A later view (another partition ran ahead), then earlier ones, then one a day later.
        for (minutes, product) in [(600.0, "p-late"), (0, "p-early"), (30, "p-mid"), (600 + 60 * 24, "p-next-day")] {
            model.apply(Self.track("Product Viewed", ["product_id": .string(product)], minutes: minutes, id: product), shopperID: 1)
        }
        #expect(model.commands.map(\.causationID) == ["p-late", "p-next-day"])
    }

    /// The model's part: an erased shopper takes nothing more. (CaptureHandler applies what the same person does
    /// afterwards to a new shopper, as one event at a time would: CaptureBatchEquivalenceTests.)
    @Test func anErasedShopperTakesNothingMore() {
        var model = Self.model()
        model.apply(Self.capture(marketing: true, offer: nil), shopperID: 1)
        model.apply(Self.track("Erasure Requested", ["email": .string(Self.email)], minutes: 1), shopperID: 1)
        model.apply(Self.capture(marketing: true, minutes: 2, id: "again"), shopperID: 1)
        model.apply(Self.track("Product Viewed", ["product_id": .string("p-1")], minutes: 3), shopperID: 1)
        #expect(model.commands.isEmpty)
        #expect(model.erasures.count == 1)
        #expect(model.contacts.values.first?.permission.erased == true)
    }

    @Test func commandsAreDeterministic() {
        var first = Self.model()
        var second = Self.model()
        first.apply(Self.capture(marketing: true), shopperID: 1)
        second.apply(Self.capture(marketing: true), shopperID: 1)
        #expect(first.commands == second.commands)
    }

    @Test func anEventOlderThanStaleAfterHoursChangesStateButStartsNothing() throws {
        // Processed four days after it happened: the store's default is 72 hours.
        var model = Self.model(processedAt: Self.start.addingTimeInterval(4 * 86_400))
        model.apply(Self.track("Product Viewed", ["product_id": .string("p-1")]), shopperID: 1)
        model.apply(Self.capture(marketing: true, minutes: 1), shopperID: 1)
        #expect(model.commands.isEmpty, "no welcome, no browse recommendation")
        let contact = try #require(model.contacts[.init(storeID: Self.store, email: Self.email)])
        #expect(contact.permission.marketing, "the consent is recorded all the same")
        #expect(model.ledger.map(\.kind) == ["consent"])
        #expect(model.decisions.map(\.decision) == [.dropped(reason: "stale_event")])
        #expect(model.recommendations.map(\.decision) == [.dropped(reason: "stale_event")])
        #expect(model.shoppers[1]?.welcome == nil, "nothing held for later: a fresh capture may still welcome them")

        // Within the window, the same events converse.
        var fresh = Self.model(processedAt: Self.start.addingTimeInterval(71 * 3600))
        fresh.apply(Self.track("Product Viewed", ["product_id": .string("p-1")]), shopperID: 1)
        fresh.apply(Self.capture(marketing: true, minutes: 1), shopperID: 1)
        #expect(fresh.commands.map(\.name) == ["recommend:browse", "welcome_offer"])
    }
}
