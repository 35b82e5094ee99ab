import ArgumentParser
import Foundation
import Logging
import Shared

/// `CaptureWorker explain`: one shopper's timeline — events, consent changes, every command and every decision not
/// to send, with its reason. The answer to "why did (or didn't) this shopper get this email?".
struct Explain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print one shopper's timeline: events, consent, and every decision to send or not, with its reason.")

    @Option(help: "The store (context.storeId).")
    var store = "default"

    @Option(help: "The shopper's email address.")
    var email: String?

    @Option(help: "The shopper's userId.")
    var userId: String?

    @Option(help: "The shopper's anonymousId.")
    var anonymousId: String?

    func validate() throws {
        guard [email, userId, anonymousId].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --email, --user-id, --anonymous-id")
        }
        if let email, EmailAddress(email) == nil { throw ValidationError("--email is not a valid email address") }
    }

    func run() async throws {
        let (kind, value) =
            if let email { ("email", EmailAddress(email)?.value ?? email) } else if let userId { ("user_id", userId) } else { ("anonymous_id", anonymousId ?? "") }
        let store = self.store
        let lines = try await OperatorCommand.withConnection(applicationName: "CaptureWorker explain") { connection in
            try Self.timeline(store: store, kind: kind, value: value, connection: connection)
        }
        print(lines.joined(separator: "\n"))
    }

    /// The timeline as printable lines: a header with the current permission state, then one line per fact, oldest
    /// first.
    static func timeline(store: String, kind: String, value: String, connection: PostgresConnection) throws -> [String] {
        let shopperID = try connection.query(
            "SELECT shopper_id FROM rapport_identities WHERE store_id = \(store) AND kind = \(kind) AND value = \(value)"
        ).first?.decode("shopper_id", as: Int64.self)
        var contactID: Int64?
        if kind == "email" {
            contactID = try connection.query("SELECT contact_id FROM rapport_contacts WHERE store_id = \(store) AND email = \(value)").first?
                .decode("contact_id", as: Int64.self)
        } else if let shopperID {
            contactID = try connection.query("SELECT contact_id FROM capture_shoppers WHERE store_id = \(store) AND shopper_id = \(shopperID)").first
                .flatMap { try $0.decode("contact_id", as: Int64?.self) }
            // A shopper CaptureWorker never saw (an order, a survey): the contact of their known address.
            if contactID == nil, let email = try ShopperResolver.known([(store, shopperID)], connection: connection)[shopperID]?.email {
                contactID = try connection.query("SELECT contact_id FROM rapport_contacts WHERE store_id = \(store) AND email = \(email)").first?
                    .decode("contact_id", as: Int64.self)
            }
        }
        let orders = try Self.orders(store: store, shopperID: shopperID, email: kind == "email" ? value : nil, connection: connection)
        guard shopperID != nil || contactID != nil || !orders.isEmpty else { return ["no shopper with \(kind) \(value) in store \(store)"] }
        var lines = ["shopper \(shopperID.map { "capture:\($0)" } ?? "(none)") in store \(store), by \(kind)"]
        if let contactID,
            let contact = try connection.query(
                """
                SELECT transactional_ok, marketing_consent, consent_level, awaiting_confirmation, suppression, soft_bounce_streak,
                       erased_at IS NOT NULL, time_zone
                FROM rapport_contacts WHERE store_id = \(store) AND contact_id = \(contactID)
                """
            ).first
        {
            let (transactional, marketing, consentLevel, awaitingConfirmation, suppression, softBounces, erased, timeZone) =
                try contact.decode((Bool, Bool, String?, Bool, String?, Int, Bool, String?).self)
            let flags = [
                "transactional: \(transactional ? "yes" : "no")",
                "marketing: \(marketing ? "yes" : "no") (\(consentLevel ?? "no consent recorded"))",
                awaitingConfirmation ? "awaiting confirmation" : nil,
                suppression.map { "suppressed: \($0)" },
                "soft bounces in a row: \(softBounces)",
                erased ? "ERASED" : nil,
                "time zone: \(timeZone ?? "store's")",
            ].compactMap { $0 }
            lines.append("now: " + flags.joined(separator: "; "))
        }
        var facts: [(Date, Int, String)] = []
        if let shopperID {
            for (occurredAt, event, messageID) in try connection.query(
                "SELECT occurred_at, event, message_id FROM capture_timeline WHERE store_id = \(store) AND shopper_id = \(shopperID)"
            ).decode((Date, String, String).self)
            {
                facts.append((occurredAt, 0, "event     \(event)  [message \(messageID)]"))
            }
            for (occurredAt, change, marketing, source, optInLevel, textVersion, messageID) in try connection.query(
                """
                SELECT occurred_at, kind, marketing, source, opt_in_level, text_version, message_id
                FROM capture_consent_ledger WHERE store_id = \(store) AND shopper_id = \(shopperID)
                """
            ).decode((Date, String, Bool?, String?, String?, String?, String).self)
            {
                let details = [
                    marketing.map { $0 ? "marketing yes" : "marketing no" }, source.map { "source \($0)" }, optInLevel.map { "opt-in \($0)" },
                    textVersion.map { "text version \($0)" },
                ].compactMap { $0 }
                facts.append((occurredAt, 1, "consent   \(change)  \(details.joined(separator: ", "))  [message \(messageID)]"))
            }
        }
        let subject = shopperID.map { "capture:\($0)" } ?? ""
        for (decidedAt, decision, template, category, reason, commandID, causationID, notBefore, worker) in try connection.query(
            """
            SELECT decided_at, decision, template, category, reason, command_id, causation_id, not_before, worker
            FROM rapport_contact_decisions
            WHERE store_id = \(store) AND (contact_id = \(contactID) OR subject = \(subject))
            """
        ).decode((Date, String, String, String, String, String?, String, Date?, String).self)
        {
            var text = "\(decision.padding(toLength: 10, withPad: " ", startingAt: 0))\(template) (\(category))"
            if decision != "sent" { text += " — \(reason)" }
            if let notBefore { text += ", not before \(notBefore.rfc3339)" }
            if let commandID { text += "  [command \(commandID)]" }
            text += "  [caused by \(causationID), \(worker)]"
            facts.append((decidedAt, 2, text))
        }
        facts += orders
        facts += try Self.steps(store: store, shopperID: shopperID, email: kind == "email" ? value : nil, connection: connection)
        if let shopperID {
            let (now, surveys) = try Self.survey(store: store, shopperID: shopperID, connection: connection)
            lines += now
            facts += surveys
        }
        lines += facts.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { "\($0.0.rfc3339)  \($0.2)" }
        return lines
    }

    /// What SurveyWorker knows of the shopper, where its tables are in this database: the churn risk as last scored and
    /// the profile (header lines), and each survey response (facts).
    static func survey(store: String, shopperID: Int64, connection: PostgresConnection) throws -> ([String], [(Date, Int, String)]) {
        guard try connection.query("SELECT to_regclass('survey_profiles') IS NOT NULL").first?.decode(Bool.self) ?? false else { return ([], []) }
        var header: [String] = []
        if let churn = try connection.query(
            """
            SELECT risk, band, overdue, expected_gap_days, orders, last_order_at, scored_at, win_back_after
            FROM survey_churn WHERE store_id = \(store) AND shopper_id = \(shopperID)
            """
        ).first {
            let (risk, band, overdue, gap, orders, _, scoredAt, winBackAfter) = try churn.decode((Double, String, Double, Double, Int, Date, Date, Date?).self)
            var text = "churn: risk \(String(format: "%.2f", risk)) (\(band)), \(String(format: "%.1f", overdue))× overdue on an expected gap of "
                + "\(String(format: "%.1f", gap)) days, \(orders) orders, scored \(scoredAt.rfc3339)"
            if winBackAfter != nil { text += "; lapsed (one win-back for this silence)" }
            header.append(text)
        }
        if let profile = try connection.query(
            """
            SELECT array_to_string(interests, ', '), habits::text, income_band, array_to_string(channels, ', '), channels IS NOT NULL, other::text, responses
            FROM survey_profiles WHERE store_id = \(store) AND shopper_id = \(shopperID)
            """
        ).first {
            let (interests, habits, incomeBand, channels, hasChannels, other, responses) =
                try profile.decode((String?, String, String?, String?, Bool, String, Int).self)
            let parts = [
                interests.map { "interests \($0)" },
                habits == "{}" ? nil : "habits \(habits)",
                incomeBand.map { "income band \($0)" },
                hasChannels ? "channels \(channels.flatMap { $0.isEmpty ? nil : $0 } ?? "none")" : nil,
                other == "{}" ? nil : "other answers \(other)",
            ].compactMap { $0 }
            header.append("profile (\(responses) surveys): " + parts.joined(separator: "; "))
        }
        let responses = try connection.query(
            "SELECT submitted_at, survey_id, message_id FROM survey_responses WHERE store_id = \(store) AND shopper_id = \(shopperID)"
        ).decode((Date, String, String).self).map { submittedAt, surveyID, messageID in
            (submittedAt, 0, "survey    \(surveyID) answered  [message \(messageID)]")
        }
        return (header, responses)
    }

    /// The shopper's orders (ReceiptWorker's, where its tables are in this database): the shared shopper's, and any
    /// placed with the address asked about.
    static func orders(store: String, shopperID: Int64?, email: String?, connection: PostgresConnection) throws -> [(Date, Int, String)] {
        guard shopperID != nil || email != nil,
            try connection.query("SELECT to_regclass('receipt_orders') IS NOT NULL").first?.decode(Bool.self) ?? false
        else { return [] }
        var facts: [(Date, Int, String)] = []
        for (orderID, status, placedAt, total, currency, messageID, items) in try connection.query(
            """
            SELECT o.order_id, o.status, o.placed_at, o.total, o.currency, o.message_id,
                   (SELECT count(*) FROM receipt_order_items i WHERE i.store_id = o.store_id AND i.order_id = o.order_id) AS items
            FROM receipt_orders o WHERE o.store_id = \(store) AND (o.shopper_id = \(shopperID) OR o.email = \(email))
            """
        ).decode((String, String, Date, Int64?, String, String?, Int).self)
        {
            let totalText = total.map { Money(minorUnits: $0, currency: currency).text + " " + currency } ?? "no total"
            let text = "order     \(orderID) \(status): \(items) items, total \(totalText)  [message \(messageID ?? "")]"
            facts.append((placedAt, 0, text))
        }
        return facts
    }

    /// The shopper's scheduled steps, at the time each is (or was) due, with its state.
    static func steps(store: String, shopperID: Int64?, email: String?, connection: PostgresConnection) throws -> [(Date, Int, String)] {
        guard shopperID != nil || email != nil else { return [] }
        return try connection.query(
            """
            SELECT template, journey, order_id, state, reason, due_at FROM rapport_scheduled_steps
            WHERE store_id = \(store) AND (shopper_id = \(shopperID) OR email = \(email))
            """
        ).decode((String, String, String?, String, String?, Date).self).map { template, journey, orderID, state, reason, dueAt in
            let reasonText = reason.map { state == "sent" ? "" : " — \($0)" } ?? ""
            let order = orderID.map { ", order \($0)" } ?? ""
            return (dueAt, 3, "step      \(template) (\(journey)\(order)): \(state)\(reasonText)")
        }
    }
}
