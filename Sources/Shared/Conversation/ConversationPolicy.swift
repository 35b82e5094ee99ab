import Foundation

/// Whether a message is owed to the shopper (a receipt, a confirmation) or is marketing.
public enum MessageCategory: String, Sendable {
    case transactional, marketing
}

/// An email template of the contract, with the rules the policy applies to it.
public struct EmailTemplate: Sendable, Hashable {
    /// What happens to a marketing message the contact-pressure caps hold back.
    public enum OverCapRule: Sendable, Hashable {
        /// Sent later, when the window has room.
        case deferred
        /// Not sent at all: it would be stale later.
        case dropped
    }

    /// The contract's template name.
    public let name: String
    public let category: MessageCategory
    /// Higher wins when two marketing messages compete for the same budget.
    public let priority: Int
    public let overCap: OverCapRule

    public static let confirmSubscription = EmailTemplate(name: "confirm_subscription", category: .transactional, priority: 100, overCap: .deferred)
    public static let receipt = EmailTemplate(name: "receipt", category: .transactional, priority: 100, overCap: .deferred)
    public static let welcomeOffer = EmailTemplate(name: "welcome_offer", category: .marketing, priority: 90, overCap: .dropped)
    public static let thankYou = EmailTemplate(name: "thank_you", category: .marketing, priority: 80, overCap: .dropped)
    public static let surveyInvite = EmailTemplate(name: "survey_invite", category: .marketing, priority: 60, overCap: .deferred)
    public static let whyWeExist = EmailTemplate(name: "why_we_exist", category: .marketing, priority: 50, overCap: .deferred)
    public static let nextSale = EmailTemplate(name: "next_sale", category: .marketing, priority: 40, overCap: .deferred)
    public static let walkWithMe = EmailTemplate(name: "walk_with_me", category: .marketing, priority: 30, overCap: .deferred)
    /// A customer whose next order is overdue: what they bought, what they may like next, the store's offer.
    public static let winBack = EmailTemplate(name: "win_back", category: .marketing, priority: 45, overCap: .deferred)
    /// Thanks for answering a survey (only where the store enables it): an answer to the shopper's own action.
    public static let surveyAcknowledgement = EmailTemplate(name: "survey_acknowledgement", category: .marketing, priority: 85, overCap: .dropped)

    /// Every template of the contract.
    public static let all: [EmailTemplate] = [
        confirmSubscription, receipt, welcomeOffer, thankYou, surveyInvite, whyWeExist, nextSale, walkWithMe, winBack, surveyAcknowledgement,
    ]

    /// The template of the contract called `name`.
    public static func named(_ name: String) -> EmailTemplate? { all.first { $0.name == name } }
}

/// What the policy knows about a contact at the moment of sending.
public struct ContactPermission: Sendable, Equatable {
    public enum Suppression: String, Sendable {
        /// No more marketing (unsubscribed, marked as spam).
        case marketing
        /// No more mail at all (hard bounce, erasure).
        case all
    }

    /// Transactional mail may be sent (the shopper gave the address: a capture, a checkout, an order).
    public var transactional = false
    /// Marketing consent is current (given, not withdrawn, and confirmed where the store asks for double opt-in).
    public var marketing = false
    /// Single opt-in given, confirmation awaited (double opt-in stores).
    public var awaitingConfirmation = false
    public var suppression: Suppression?
    public var erased = false
    /// The shopper's time zone, when known.
    public var timeZone: String?

    public init(
        transactional: Bool = false, marketing: Bool = false, awaitingConfirmation: Bool = false, suppression: Suppression? = nil,
        erased: Bool = false, timeZone: String? = nil
    ) {
        self.transactional = transactional
        self.marketing = marketing
        self.awaitingConfirmation = awaitingConfirmation
        self.suppression = suppression
        self.erased = erased
        self.timeZone = timeZone
    }
}

/// The outcome of asking to send one message, with why.
public enum ContactDecision: Sendable, Equatable {
    case send
    /// Not now; try again at `until`.
    case deferred(until: Date, reason: String)
    /// Not permitted (consent, suppression, erasure).
    case suppressed(reason: String)
    /// Permitted but not worth sending (over the cap, and stale later).
    case dropped(reason: String)

    /// `sent`, `deferred`, `suppressed` or `dropped`, as recorded.
    public var name: String {
        switch self {
        case .send: "sent"
        case .deferred: "deferred"
        case .suppressed: "suppressed"
        case .dropped: "dropped"
        }
    }

    /// Why; `sent` for a send.
    public var reason: String {
        switch self {
        case .send: "permitted"
        case .deferred(_, let reason), .suppressed(let reason), .dropped(let reason): reason
        }
    }
}

/// The conversation policy every worker and scheduler applies at the moment a command is emitted: consent,
/// suppression and erasure, contact pressure per store, quiet hours in the shopper's zone.
public struct ConversationPolicy: Sendable {
    public let settings: StoreSettings

    public init(settings: StoreSettings) {
        self.settings = settings
    }

    /// `dropped: stale_event` when an event that happened at `occurredAt` is too old, at `processedAt`, to start a
    /// conversation (the store's `stale_after_hours`): it changes state, but causes no command and no journey.
    /// `nil` when it is fresh.
    public func staleness(of occurredAt: Date, processedAt: Date) -> ContactDecision? {
        processedAt.timeIntervalSince(occurredAt) > settings.staleAfter.seconds ? .dropped(reason: Self.staleEvent) : nil
    }

    /// The reason recorded for what an old event did not start.
    public static let staleEvent = "stale_event"

    /// Decides whether `template` may go to a contact now.
    ///
    /// - Parameters:
    ///   - direct: The message answers the shopper's own action just now (the welcome offer they asked for, a
    ///     confirmation): quiet hours do not hold it and the pressure caps do not stop it — but it counts toward them.
    ///   - sentMarketing: When the contact's earlier marketing emails were sent (the caps count them).
    public func decide(
        _ template: EmailTemplate, for contact: ContactPermission, at now: Date, direct: Bool, sentMarketing: [Date]
    ) -> ContactDecision {
        if contact.erased { return .suppressed(reason: "erased") }
        if contact.suppression == .all { return .suppressed(reason: "suppressed_all_mail") }
        guard contact.transactional || contact.marketing else { return .suppressed(reason: "no_permission_to_email") }
        guard template.category == .marketing else { return .send }
        if contact.suppression == .marketing { return .suppressed(reason: "unsubscribed") }
        if contact.awaitingConfirmation { return .suppressed(reason: "awaiting_confirmation") }
        guard contact.marketing else { return .suppressed(reason: "no_marketing_consent") }
        if direct { return .send }
        for cap in settings.pressureCaps {
            let windowStart = now.addingTimeInterval(-cap.window.seconds)
            let inWindow = sentMarketing.filter { $0 > windowStart && $0 <= now }.sorted()
            guard inWindow.count >= cap.count else { continue }
            let hours = Int(cap.window.seconds / 3600)
            switch template.overCap {
            case .dropped:
                return .dropped(reason: "pressure_cap_\(cap.count)_per_\(hours)h")
            case .deferred:
                // Room opens when the oldest send that fills the cap leaves the window.
                let freeing = inWindow.isEmpty ? now : inWindow[inWindow.count - cap.count].addingTimeInterval(cap.window.seconds)
                return .deferred(until: max(freeing, now.addingTimeInterval(1)), reason: "pressure_cap_\(cap.count)_per_\(hours)h")
            }
        }
        if let end = quietHoursEnd(at: now, timeZone: contact.timeZone) {
            return .deferred(until: end, reason: "quiet_hours")
        }
        return .send
    }

    /// Decides a set of messages due for the same contact at the same moment: the higher priority first, each send
    /// counting toward the caps for the ones after it.
    /// - Returns: One decision per request, in the requests' order.
    public func decide(
        _ requests: [(template: EmailTemplate, direct: Bool)], for contact: ContactPermission, at now: Date, sentMarketing: [Date]
    ) -> [ContactDecision] {
        var sent = sentMarketing
        var decisions = [ContactDecision?](repeating: nil, count: requests.count)
        for index in requests.indices.sorted(by: { (requests[$0].template.priority, $1) > (requests[$1].template.priority, $0) }) {
            let decision = decide(requests[index].template, for: contact, at: now, direct: requests[index].direct, sentMarketing: sent)
            if decision == .send, requests[index].template.category == .marketing { sent.append(now) }
            decisions[index] = decision
        }
        return decisions.map { $0 ?? .suppressed(reason: "undecided") }
    }

    /// When quiet hours end, if `now` is inside them in `timeZone` (the store's when `nil` or unknown).
    public func quietHoursEnd(at now: Date, timeZone: String?) -> Date? {
        let quiet = settings.quietHours
        guard quiet.start != quiet.end else { return nil }
        let zone = timeZone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: settings.timeZone) ?? .gmt
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = calendar.dateComponents([.hour, .minute], from: now)
        let minute = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
        guard quiet.contains(minuteOfDay: minute) else { return nil }
        let startOfDay = calendar.startOfDay(for: now)
        let endToday = calendar.date(byAdding: .minute, value: quiet.end, to: startOfDay) ?? now
        return endToday > now ? endToday : (calendar.date(byAdding: .day, value: 1, to: endToday) ?? now)
    }
}
