import Foundation

/// A conversation's later message, as a row of `rapport_scheduled_steps`.
public struct ScheduledStep: Sendable, Equatable {
    public var storeID: String
    /// Assigned by PostgreSQL; 0 before the step is stored.
    public var stepID: Int64
    /// The journey it belongs to (`orientation`).
    public var journey: String
    /// The email template it sends.
    public var template: String
    /// The Kafka key of its commands: the contract's shopper key.
    public var shopperKey: String
    /// The shared shopper it is for (``ShopperResolver``), where known: a newer order, a merge or an erasure finds the
    /// step by it.
    public var shopperID: Int64?
    /// The address to write to.
    public var email: String?
    /// The event that caused it: its command's `causation_id`, and half of its deterministic id.
    public var causationID: String
    /// The order that started it, where one did (its refund or cancellation ends the journey).
    public var orderID: String?
    /// What the worker needs at sending time (names, what was bought, …).
    public var data: [String: JSONValue]
    public var dueAt: Date
    /// How often it was deferred.
    public var attempts: Int

    public init(
        storeID: String, stepID: Int64 = 0, journey: String, template: String, shopperKey: String, shopperID: Int64? = nil, email: String?, causationID: String,
        orderID: String?, data: [String: JSONValue], dueAt: Date, attempts: Int = 0
    ) {
        self.storeID = storeID
        self.stepID = stepID
        self.journey = journey
        self.template = template
        self.shopperKey = shopperKey
        self.shopperID = shopperID
        self.email = email
        self.causationID = causationID
        self.orderID = orderID
        self.data = data
        self.dueAt = dueAt
        self.attempts = attempts
    }
}

/// What became of a due step, decided by the worker at the moment of sending.
public struct StepOutcome: Sendable {
    public enum Kind: Sendable, Equatable {
        /// Sent: its commands go to the outbox.
        case sent(commands: [OutboundCommand])
        /// Due again at `until` (pressure caps, quiet hours): pending, never lost.
        case deferred(until: Date)
        /// Ended by an exit condition (a refund, a newer order, erasure).
        case cancelled
        /// Not worth sending (over the cap and stale later; nothing to say).
        case dropped
        /// Not permitted (consent, suppression, erasure).
        case suppressed
    }

    public var kind: Kind
    public var reason: String
    /// The policy's decisions to record (the email's, and a recommendation's), for the shopper's timeline.
    public var decisions: [ContactDecisionLog.Entry]

    public init(_ kind: Kind, reason: String, decisions: [ContactDecisionLog.Entry] = []) {
        self.kind = kind
        self.reason = reason
        self.decisions = decisions
    }

    /// The step's outcome when the conversation policy says not to send now — deferred, suppressed or dropped, with
    /// the policy's reason and `entry` (the decision, as recorded); `nil` when it says to send, which the worker's
    /// handler turns into commands.
    public init?(declining decision: ContactDecision, recorded entry: ContactDecisionLog.Entry) {
        switch decision {
        case .send: return nil
        case .deferred(let until, let reason): self.init(.deferred(until: until), reason: reason, decisions: [entry])
        case .suppressed(let reason): self.init(.suppressed, reason: reason, decisions: [entry])
        case .dropped(let reason): self.init(.dropped, reason: reason, decisions: [entry])
        }
    }

    /// The step's state as stored.
    var state: String {
        switch kind {
        case .sent: "sent"
        case .deferred: "pending"
        case .cancelled: "cancelled"
        case .dropped: "dropped"
        case .suppressed: "suppressed"
        }
    }

    /// The outcome's name in metrics and logs (`deferred` rather than the stored `pending`).
    var name: String {
        if case .deferred = kind { return "deferred" }
        return state
    }
}

/// A worker's side of the scheduler: what to do with its due steps, inside the claim's transaction.
public protocol StepHandler: Sendable {
    /// Decides each of `steps` as of `now` (consent, suppression, exit conditions, caps and quiet hours), reading what
    /// it needs through `connection`.
    /// - Returns: One outcome per step, in order.
    /// - Throws: To roll the claim back: the steps stay pending and are claimed again after a backoff.
    func decide(_ steps: [ScheduledStep], now: Date, connection: PostgresConnection) throws -> [StepOutcome]
}
