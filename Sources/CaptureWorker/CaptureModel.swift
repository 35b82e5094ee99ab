import Foundation
import InboundEvents
import Shared

/// A contact (one email address of one store) as the batch sees it: the shared reading of `rapport_contacts` (``Contacts``).
typealias ContactState = Contacts.Contact

/// A shopper as the batch sees it.
struct ShopperState: Sendable, Equatable {
    enum Welcome: Sendable, Equatable {
        /// Waiting for the double opt-in confirmation.
        case held(offerCode: String, causationID: String)
        case sent
        /// Withdrawn before it could be sent.
        case declined
    }

    var shopperID: Int64
    var storeID: String
    var userID: String?
    var anonymousID: String?
    var email: String?
    var firstName: String?
    var lastName: String?
    var phone: String?
    var traits: [String: JSONValue] = [:]
    var confirmToken: String?
    var welcome: Welcome?
    var browseRecommendedAt: Date?
    var erased = false
    /// The products they looked at most recently, newest first (personalisation).
    var recentProducts: [String] = []
}

/// Everything a batch of capture events changes, decided in memory in event order; ``CaptureStore`` loads the state
/// before and writes these afterwards, set-based. Pure: no I/O, so that its rules are tested directly and over random
/// event sequences.
struct CaptureModel {
    typealias ContactKey = Contacts.Key

    struct LedgerEntry: Equatable {
        var storeID: String
        var shopperID: Int64
        var messageID: String
        var kind: String
        var marketing: Bool?
        var source: String?
        var optInLevel: String?
        var consentText: String?
        var textVersion: String?
        var ip: String?
        var userAgent: String?
        var occurredAt: Date
    }

    struct TimelineEntry: Equatable {
        var storeID: String
        var shopperID: Int64
        var messageID: String
        var event: String
        var occurredAt: Date
    }

    struct InterestKey: Hashable {
        var storeID: String
        var shopperID: Int64
        var kind: String
        var item: String
    }

    struct InterestDelta: Equatable {
        var views = 0
        var adds = 0
        var lastAt: Date
    }

    struct Erasure: Equatable {
        var storeID: String
        var shopperID: Int64
        var contactID: Int64?
        var email: String?
        var keepHash: Bool
    }

    let stores: StoreDirectory
    let topics: Topics
    /// Makes confirmation tokens (random in production, fixed in tests).
    let makeToken: () -> String
    /// When the batch is processed: an event older than its store's `stale_after_hours` by then starts nothing.
    let processedAt: Date

    var shoppers: [Int64: ShopperState]
    var contacts: [ContactKey: ContactState]

    private(set) var ledger: [LedgerEntry] = []
    private(set) var timeline: [TimelineEntry] = []
    private(set) var interests: [InterestKey: InterestDelta] = [:]
    /// The policy's decisions about emails, as recorded.
    private(set) var decisions: [ContactDecisionLog.Entry] = []
    /// The recommendation commands emitted, as recorded for the shopper's timeline.
    private(set) var recommendations: [ContactDecisionLog.Entry] = []
    private(set) var commands: [OutboundCommand] = []
    private(set) var erasures: [Erasure] = []
    private(set) var touchedShoppers: Set<Int64> = []
    private(set) var touchedContacts: Set<ContactKey> = []

    init(
        stores: StoreDirectory, topics: Topics, shoppers: [Int64: ShopperState], contacts: [ContactKey: ContactState],
        processedAt: Date, makeToken: @escaping () -> String
    ) {
        self.processedAt = processedAt
        self.stores = stores
        self.topics = topics
        self.shoppers = shoppers
        self.contacts = contacts
        self.makeToken = makeToken
    }

    /// Applies one event of the shopper `shopperID` (resolved from its identities).
    /// - Returns: The commands it caused (also appended to ``commands``).
    @discardableResult
    mutating func apply(_ event: CaptureEvent, shopperID: Int64) -> ArraySlice<OutboundCommand> {
        let first = commands.count
        update(with: event, shopperID: shopperID)
        return commands[first...]
    }

    private mutating func update(with event: CaptureEvent, shopperID: Int64) {
        guard var shopper = shoppers[shopperID], !shopper.erased else { return }
        let message = event.message
        let settings = stores.settings(for: message.storeID)
        let at = message.timestamp
        touchedShoppers.insert(shopperID)
        shopper.userID = message.userID ?? shopper.userID
        shopper.anonymousID = message.anonymousID ?? shopper.anonymousID
        timeline.append(
            TimelineEntry(storeID: message.storeID, shopperID: shopperID, messageID: message.messageID, event: message.event ?? "identify", occurredAt: at))

        // The address the event is about becomes the shopper's (the latest one given wins).
        var contactKey = shopper.email.map { ContactKey(storeID: message.storeID, email: $0) }
        if let email = event.email?.value, contacts[ContactKey(storeID: message.storeID, email: email)] != nil {
            contactKey = ContactKey(storeID: message.storeID, email: email)
            shopper.email = email
        }
        var contact = contactKey.flatMap { contacts[$0] }
        if var current = contact {
            if let zone = message.context["timezone"]?.stringValue, TimeZone(identifier: zone) != nil { current.permission.timeZone = zone }
            if let locale = message.context["locale"]?.stringValue { current.locale = locale }
            contact = current
        }

        func ledgerEntry(_ kind: String, marketing: Bool? = nil, source: String? = nil, consent: CaptureEvent.Consent? = nil) {
            ledger.append(
                LedgerEntry(
                    storeID: message.storeID, shopperID: shopperID, messageID: message.messageID, kind: kind, marketing: marketing ?? consent?.marketing,
                    source: source, optInLevel: consent?.level, consentText: consent?.text, textVersion: consent?.textVersion,
                    ip: message.context["ip"]?.stringValue, userAgent: message.context["userAgent"]?.stringValue, occurredAt: at))
        }

        switch event.action {
        case .identify(let firstName, let lastName, let phone, let traits):
            shopper.firstName = firstName ?? shopper.firstName
            shopper.lastName = lastName ?? shopper.lastName
            shopper.phone = phone ?? shopper.phone
            shopper.traits.merge(traits) { _, new in new }

        case .emailCaptured(let source, let offerCode, let consent):
            guard var current = contact else { break }
            ledgerEntry("consent", marketing: consent?.marketing ?? false, source: source, consent: consent)
            current.permission.transactional = true
            if let consent {
                if consent.marketing {
                    // A new explicit consent lifts an earlier unsubscribe or spam complaint (the end of marketing),
                    // never a bounce's end of all mail.
                    if current.permission.suppression == .marketing { current.permission.suppression = nil }
                    let alreadyConfirmed = current.consentLevel == "confirmed" && current.permission.marketing
                    if consent.level == "confirmed" || alreadyConfirmed || !settings.doubleOptIn {
                        current.permission.marketing = true
                        current.permission.awaitingConfirmation = false
                        current.consentLevel = alreadyConfirmed ? "confirmed" : consent.level
                    } else {
                        current.permission.marketing = false
                        current.permission.awaitingConfirmation = true
                        current.consentLevel = consent.level
                        let token = shopper.confirmToken ?? makeToken()
                        shopper.confirmToken = token
                        send(.confirmSubscription, direct: true, to: &current, shopper: shopper, message: message, data: ["confirmation_token": .string(token)])
                    }
                } else {
                    current.permission.marketing = false
                    current.permission.awaitingConfirmation = false
                    current.consentLevel = consent.level
                    withdrawHeldWelcome(shopper: &shopper, contact: current, message: message, reason: "consent_withdrawn")
                }
            }
            // The form promised an offer for the address, whichever form it was (CONTRACT.md): with marketing consent
            // the capture earns the welcome, once per shopper; without it, the decision not to send is recorded.
            if let offerCode {
                if consent?.marketing == true {
                    offerWelcome(code: offerCode, causationID: message.messageID, shopper: &shopper, contact: &current, message: message)
                } else {
                    decisions.append(
                        ContactDecisionLog.Entry(
                            storeID: message.storeID, contactID: current.contactID, subject: Self.subject(shopper), worker: Self.worker,
                            template: .welcomeOffer, decision: .suppressed(reason: "no_marketing_consent"), commandID: nil,
                            causationID: message.messageID, decidedAt: message.timestamp))
                }
            }
            contact = current

        case .emailConfirmed(let token):
            guard var current = contact else { break }
            // Only the token the worker sent to this address confirms it: anyone can publish an address.
            guard let expected = shopper.confirmToken, let token, Self.constantTimeEqual(token, expected) else {
                decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: current.contactID, subject: Self.subject(shopper), worker: Self.worker,
                        template: .confirmSubscription, decision: .dropped(reason: "confirmation_token_mismatch"), commandID: nil,
                        causationID: message.messageID, decidedAt: message.timestamp))
                break
            }
            ledgerEntry("confirmation", marketing: true, source: "confirmation")
            // A confirmation completes a consent given and awaiting it; it never turns a refusal or a withdrawal into
            // consent. Either way the address is shown to work.
            if current.permission.awaitingConfirmation {
                current.permission.awaitingConfirmation = false
                current.permission.marketing = current.permission.suppression == nil
                current.consentLevel = "confirmed"
            } else if current.permission.marketing {
                current.consentLevel = "confirmed"
            }
            current.softBounceStreak = 0
            if case .held(let code, _) = shopper.welcome {
                shopper.welcome = nil
                offerWelcome(code: code, causationID: message.messageID, shopper: &shopper, contact: &current, message: message)
            }
            contact = current

        case .productInterest(let productID, let category, let added):
            let product = InterestKey(storeID: message.storeID, shopperID: shopperID, kind: "product", item: productID)
            record(product, added: added, at: at)
            if let category { record(InterestKey(storeID: message.storeID, shopperID: shopperID, kind: "category", item: category), added: added, at: at) }
            shopper.recentProducts.removeAll { $0 == productID }
            shopper.recentProducts.insert(productID, at: 0)
            // At most one per window around the latest: events of one shopper may arrive out of order (their key
            // changes at login, and another partition may run ahead). An old event's window is recorded as dropped,
            // once per window like a recommendation, so that an imported history adds one row a window, not one an event.
            if shopper.browseRecommendedAt.map({ abs(at.timeIntervalSince($0)) >= settings.browseRecommendationWindow.seconds }) ?? true {
                shopper.browseRecommendedAt = max(at, shopper.browseRecommendedAt ?? at)
                let stale = ConversationPolicy(settings: settings).staleness(of: at, processedAt: processedAt)
                let command = stale == nil ? browseRecommendation(shopper: shopper, contact: contact, message: message, added: added) : nil
                if let command { commands.append(command) }
                recommendations.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: contact?.contactID, subject: Self.subject(shopper), worker: Self.worker,
                        recommendation: "browse", commandID: command?.id, causationID: message.messageID, decidedAt: at, decision: stale ?? .send))
            }

        case .checkoutStarted:
            guard var current = contact else { break }
            let soft = settings.softOptIn && current.consentLevel == nil && current.permission.suppression == nil
            ledgerEntry("checkout", marketing: soft ? true : nil, source: "checkout")
            current.permission.transactional = true
            if soft {
                current.permission.marketing = true
                current.consentLevel = "soft"
            }
            contact = current

        case .unsubscribed, .markedAsSpam:
            guard var current = contact else { break }
            ledgerEntry(event.action == .unsubscribed ? "unsubscribe" : "spam", marketing: false, source: "email_feedback")
            current.permission.marketing = false
            current.permission.awaitingConfirmation = false
            if current.permission.suppression == nil { current.permission.suppression = .marketing }
            withdrawHeldWelcome(
                shopper: &shopper, contact: current, message: message, reason: event.action == .unsubscribed ? "unsubscribed" : "marked_as_spam")
            contact = current

        case .bounced(let hard):
            guard var current = contact else { break }
            ledgerEntry(hard ? "hard_bounce" : "soft_bounce", source: "email_feedback")
            current.softBounceStreak = hard ? current.softBounceStreak : current.softBounceStreak + 1
            if hard || current.softBounceStreak >= 7 {
                current.permission.suppression = .all
                current.permission.marketing = false
                current.permission.transactional = false
                withdrawHeldWelcome(shopper: &shopper, contact: current, message: message, reason: hard ? "hard_bounce" : "seven_soft_bounces")
            }
            contact = current

        case .erasureRequested:
            withdrawHeldWelcome(shopper: &shopper, contact: contact, message: message, reason: "erased")
            erasures.append(
                Erasure(storeID: message.storeID, shopperID: shopperID, contactID: contact?.contactID, email: shopper.email, keepHash: settings.keepErasureHash)
            )
            shopper.erased = true
            shopper.email = nil
            contact?.permission.erased = true

        case .other:
            break
        }
        shoppers[shopperID] = shopper
        if let contact, let contactKey {
            contacts[contactKey] = contact
            touchedContacts.insert(contactKey)
        }
    }

    /// The welcome offer, at most once per shopper per store; held while the double opt-in is awaited.
    private mutating func offerWelcome(code: String, causationID: String, shopper: inout ShopperState, contact: inout ContactState, message: SegmentMessage) {
        // History offers nothing, not even later: the welcome is neither held nor marked as given.
        if let stale = ConversationPolicy(settings: stores.settings(for: message.storeID)).staleness(of: message.timestamp, processedAt: processedAt) {
            decisions.append(
                ContactDecisionLog.Entry(
                    storeID: message.storeID, contactID: contact.contactID, subject: Self.subject(shopper), worker: Self.worker, template: .welcomeOffer,
                    decision: stale, commandID: nil, causationID: causationID, decidedAt: message.timestamp))
            return
        }
        if shopper.welcome != nil {
            decisions.append(
                ContactDecisionLog.Entry(
                    storeID: message.storeID, contactID: contact.contactID, subject: Self.subject(shopper), worker: Self.worker, template: .welcomeOffer,
                    decision: .dropped(reason: "welcome_already_offered"), commandID: nil, causationID: causationID, decidedAt: message.timestamp))
            return
        }
        if contact.permission.awaitingConfirmation, contact.permission.suppression == nil, !contact.permission.erased {
            shopper.welcome = .held(offerCode: code, causationID: causationID)
            decisions.append(
                ContactDecisionLog.Entry(
                    storeID: message.storeID, contactID: contact.contactID, subject: Self.subject(shopper), worker: Self.worker, template: .welcomeOffer,
                    decision: .deferred(until: .distantFuture, reason: "awaiting_confirmation"), commandID: nil, causationID: causationID,
                    decidedAt: message.timestamp))
            return
        }
        let data: [String: JSONValue] = [
            "offer_code": .string(code),
            "viewed_products": .array(shopper.recentProducts.prefix(6).map { .string($0) }),
        ]
        if send(.welcomeOffer, direct: true, to: &contact, shopper: shopper, message: message, causationID: causationID, data: data) {
            shopper.welcome = .sent
        }
    }

    /// Whether two tokens are equal, in time that depends on their lengths only.
    static func constantTimeEqual(_ lhs: String, _ rhs: String) -> Bool {
        let (a, b) = (Array(lhs.utf8), Array(rhs.utf8))
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    private mutating func withdrawHeldWelcome(shopper: inout ShopperState, contact: ContactState?, message: SegmentMessage, reason: String) {
        guard case .held(_, let causationID) = shopper.welcome else { return }
        shopper.welcome = .declined
        decisions.append(
            ContactDecisionLog.Entry(
                storeID: message.storeID, contactID: contact?.contactID, subject: Self.subject(shopper), worker: Self.worker, template: .welcomeOffer,
                decision: .suppressed(reason: reason), commandID: nil, causationID: causationID, decidedAt: message.timestamp))
    }

    /// Asks the policy, records its decision, and emits the email when it says send.
    /// - Returns: Whether it was sent.
    @discardableResult
    private mutating func send(
        _ template: EmailTemplate, direct: Bool, to contact: inout ContactState, shopper: ShopperState, message: SegmentMessage,
        causationID: String? = nil, data: [String: JSONValue]
    ) -> Bool {
        let settings = stores.settings(for: message.storeID)
        let causation = causationID ?? message.messageID
        let at = message.timestamp
        let policy = ConversationPolicy(settings: settings)
        let decision =
            policy.staleness(of: at, processedAt: processedAt)
            ?? policy.decide(template, for: contact.permission, at: at, direct: direct, sentMarketing: contact.sentMarketing)
        var commandID: String?
        if decision == .send {
            let name = [shopper.firstName, shopper.lastName].compactMap { $0 }.joined(separator: " ")
            var data = data
            data["first_name"] = shopper.firstName.map(JSONValue.string) ?? .null
            let command = EmailCommand.make(
                template: template, storeID: message.storeID, causationID: causation, key: message.shopperKey, email: contact.email,
                name: name.isEmpty ? nil : name, locale: contact.locale ?? settings.locale, settings: settings, data: data,
                unsubscribeToken: contact.unsubscribeToken, createdAt: at, topic: topics.emailCommands)
            commands.append(command)
            commandID = command.id
            if template.category == .marketing { contact.sentMarketing.append(at) }
        }
        decisions.append(
            ContactDecisionLog.Entry(
                storeID: message.storeID, contactID: contact.contactID, subject: Self.subject(shopper), worker: Self.worker, template: template,
                decision: decision,
                commandID: commandID, causationID: causation, decidedAt: at))
        return decision == .send
    }

    private mutating func record(_ key: InterestKey, added: Bool, at: Date) {
        var delta = interests[key] ?? InterestDelta(lastAt: at)
        if added { delta.adds += 1 } else { delta.views += 1 }
        delta.lastAt = max(delta.lastAt, at)
        interests[key] = delta
    }

    private func browseRecommendation(shopper: ShopperState, contact: ContactState?, message: SegmentMessage, added: Bool) -> OutboundCommand {
        let products: [JSONValue] = shopper.recentProducts.prefix(10).enumerated().map { rank, product in
            .object([
                "product_id": .string(product), "score": .number((1.0 / Double(rank + 1) * 1000).rounded() / 1000),
                // CONTRACT.md's reasons are a closed list: a product added to the cart was viewed too (and leads the list).
                "reason": .string("recently_viewed"),
            ])
        }
        return RecommendationCommand.make(
            context: "browse", storeID: message.storeID, causationID: message.messageID, key: message.shopperKey, userID: shopper.userID,
            anonymousID: shopper.anonymousID, email: contact?.email, products: products, createdAt: message.timestamp,
            topic: topics.recommendationCommands)
    }

    /// The worker named in every decision it records.
    static let worker = "CaptureWorker"

    /// How decisions name a shopper without personal data.
    static func subject(_ shopper: ShopperState) -> String { "capture:\(shopper.shopperID)" }
}
