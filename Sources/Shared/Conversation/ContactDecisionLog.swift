import Foundation

/// Where every worker records the conversation policy's decisions, and the recommendation commands it emits
/// (`rapport_contact_decisions`): the shopper's record of every command and every decision not to send.
public enum ContactDecisionLog {
    /// One decision about one message to one contact (an email), or one recommendation command emitted.
    public struct Entry: Sendable {
        public var storeID: String
        public var contactID: Int64?
        /// The shopper, named without personal data (`capture:42`).
        public var subject: String
        public var worker: String
        /// The email template, or `recommend:<context>`.
        public var name: String
        /// `transactional`, `marketing` or `recommendation`.
        public var category: String
        public var decision: ContactDecision
        public var commandID: String?
        public var causationID: String
        public var decidedAt: Date

        /// The policy's decision about `template`.
        public init(
            storeID: String, contactID: Int64?, subject: String, worker: String, template: EmailTemplate, decision: ContactDecision,
            commandID: String?, causationID: String, decidedAt: Date
        ) {
            self.storeID = storeID
            self.contactID = contactID
            self.subject = subject
            self.worker = worker
            self.name = template.name
            self.category = template.category.rawValue
            self.decision = decision
            self.commandID = commandID
            self.causationID = causationID
            self.decidedAt = decidedAt
        }

        /// A recommendation command emitted in `context` (`browse`, `next_sale`, …): not the policy's (nothing is
        /// sent to the shopper), recorded so that the shopper's timeline shows every command — or, with a `decision`
        /// other than `.send` and no `commandID`, one not emitted (a stale event's).
        public init(
            storeID: String, contactID: Int64?, subject: String, worker: String, recommendation context: String, commandID: String?,
            causationID: String, decidedAt: Date, decision: ContactDecision = .send
        ) {
            self.storeID = storeID
            self.contactID = contactID
            self.subject = subject
            self.worker = worker
            self.name = "recommend:\(context)"
            self.category = "recommendation"
            self.decision = decision
            self.commandID = commandID
            self.causationID = causationID
            self.decidedAt = decidedAt
        }
    }

    /// Records `entries` in one statement, inside the caller's transaction.
    /// - Throws: ``PostgresError``.
    public static func record(_ entries: [Entry], connection: PostgresConnection) throws {
        guard !entries.isEmpty else { return }
        try connection.execute(
            .insert(
                into: "rapport_contact_decisions", entries,
                [
                    .init("store_id", "text", \.storeID), .init("contact_id", "bigint", \.contactID), .init("subject", "text", \.subject),
                    .init("worker", "text", \.worker), .init("template", "text", \.name), .init("category", "text", \.category),
                    .init("decision", "text", \.decision.name), .init("reason", "text", \.decision.reason), .init("command_id", "text", \.commandID),
                    .init("causation_id", "text", \.causationID),
                    .init("not_before", "timestamptz") { entry -> Date? in
                        if case .deferred(let until, _) = entry.decision, until != .distantFuture { return until }
                        return nil
                    },
                    .init("decided_at", "timestamptz", \.decidedAt),
                ]))
    }
}
