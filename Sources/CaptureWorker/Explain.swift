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
        let shopperRow = try connection.query(
            "SELECT shopper_id FROM rapport_identities WHERE store_id = $1 AND kind = $2 AND value = $3", [store, kind, value]
        ).first
        let shopperID = try shopperRow?.decode(Int64.self, at: 0)
        var contactID: Int64?
        if kind == "email" {
            contactID = try connection.query("SELECT contact_id FROM rapport_contacts WHERE store_id = $1 AND email = $2", [store, value]).first?
                .decode(Int64.self, at: 0)
        } else if let shopperID {
            contactID = try connection.query("SELECT contact_id FROM capture_shoppers WHERE store_id = $1 AND shopper_id = $2", [store, shopperID]).first?
                .decode(Int64.self, at: 0)
            // A shopper CaptureWorker never saw (an order, a survey): the contact of their known address.
            if contactID == nil, let email = try ShopperResolver.known([(store, shopperID)], connection: connection)[shopperID]?.email {
                contactID = try connection.query("SELECT contact_id FROM rapport_contacts WHERE store_id = $1 AND email = $2", [store, email]).first?
                    .decode(Int64.self, at: 0)
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
                FROM rapport_contacts WHERE store_id = $1 AND contact_id = $2
                """, [store, contactID]
            ).first
        {
            let flags = [
                "transactional: \(try contact.decode(Bool.self, at: 0) == true ? "yes" : "no")",
                "marketing: \(try contact.decode(Bool.self, at: 1) == true ? "yes" : "no") (\(try contact.decode(String.self, at: 2) ?? "no consent recorded"))",
                try contact.decode(Bool.self, at: 3) == true ? "awaiting confirmation" : nil,
                try contact.decode(String.self, at: 4).map { "suppressed: \($0)" },
                "soft bounces in a row: \(try contact.decode(Int.self, at: 5) ?? 0)",
                try contact.decode(Bool.self, at: 6) == true ? "ERASED" : nil,
                "time zone: \(try contact.decode(String.self, at: 7) ?? "store's")",
            ].compactMap { $0 }
            lines.append("now: " + flags.joined(separator: "; "))
        }
        var facts: [(Date, Int, String)] = []
        if let shopperID {
            for row in try connection.query(
                "SELECT occurred_at, event, message_id FROM capture_timeline WHERE store_id = $1 AND shopper_id = $2", [store, shopperID])
            {
                facts.append((try row.decode(Date.self, at: 0) ?? .distantPast, 0, "event     \(try row.decode(String.self, at: 1) ?? "")  [message \(try row.decode(String.self, at: 2) ?? "")]"))
            }
            for row in try connection.query(
                """
                SELECT occurred_at, kind, marketing, source, opt_in_level, text_version, message_id
                FROM capture_consent_ledger WHERE store_id = $1 AND shopper_id = $2
                """, [store, shopperID])
            {
                let marketing = try row.decode(Bool.self, at: 2).map { $0 ? "marketing yes" : "marketing no" }
                let details = [marketing, try row.decode(String.self, at: 3).map { "source \($0)" }, try row.decode(String.self, at: 4).map { "opt-in \($0)" },
                    try row.decode(String.self, at: 5).map { "text version \($0)" }].compactMap { $0 }
                facts.append((try row.decode(Date.self, at: 0) ?? .distantPast, 1, "consent   \(try row.decode(String.self, at: 1) ?? "")  \(details.joined(separator: ", "))  [message \(try row.decode(String.self, at: 6) ?? "")]"))
            }
        }
        for row in try connection.query(
            """
            SELECT decided_at, decision, template, category, reason, command_id, causation_id, not_before, worker
            FROM rapport_contact_decisions
            WHERE store_id = $1 AND (contact_id = $2 OR subject = $3)
            """, [store, contactID, shopperID.map { "capture:\($0)" } ?? ""])
        {
            let decision = try row.decode(String.self, at: 1) ?? ""
            var text = "\(decision.padding(toLength: 10, withPad: " ", startingAt: 0))\(try row.decode(String.self, at: 2) ?? "") (\(try row.decode(String.self, at: 3) ?? ""))"
            if decision != "sent" { text += " — \(try row.decode(String.self, at: 4) ?? "")" }
            if let notBefore = try row.decode(Date.self, at: 7) { text += ", not before \(notBefore.rfc3339)" }
            if let command = try row.decode(String.self, at: 5) { text += "  [command \(command)]" }
            text += "  [caused by \(try row.decode(String.self, at: 6) ?? ""), \(try row.decode(String.self, at: 8) ?? "")]"
            facts.append((try row.decode(Date.self, at: 0) ?? .distantPast, 2, text))
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
        guard try connection.query("SELECT to_regclass('survey_profiles') IS NOT NULL").first?.decode(Bool.self, at: 0) == true else { return ([], []) }
        var header: [String] = []
        if let churn = try connection.query(
            """
            SELECT risk, band, overdue, expected_gap_days, orders, last_order_at, scored_at, win_back_after
            FROM survey_churn WHERE store_id = $1 AND shopper_id = $2
            """, [store, shopperID]
        ).first {
            let risk = String(format: "%.2f", try churn.decode(Double.self, at: 0) ?? 0)
            let overdue = String(format: "%.1f", try churn.decode(Double.self, at: 2) ?? 0)
            let gap = String(format: "%.1f", try churn.decode(Double.self, at: 3) ?? 0)
            var text = "churn: risk \(risk) (\(try churn.decode(String.self, at: 1) ?? "")), \(overdue)× overdue on an expected gap of \(gap) days, "
                + "\(try churn.decode(Int.self, at: 4) ?? 0) orders, scored \(try churn.decode(Date.self, at: 6)?.rfc3339 ?? "")"
            if try churn.decode(Date.self, at: 7) != nil { text += "; lapsed (one win-back for this silence)" }
            header.append(text)
        }
        if let profile = try connection.query(
            """
            SELECT array_to_string(interests, ', '), habits::text, income_band, array_to_string(channels, ', '), channels IS NOT NULL, other::text, responses
            FROM survey_profiles WHERE store_id = $1 AND shopper_id = $2
            """, [store, shopperID]
        ).first {
            let parts = [
                try profile.decode(String.self, at: 0).map { "interests \($0)" },
                try profile.decode(String.self, at: 1).flatMap { $0 == "{}" ? nil : "habits \($0)" },
                try profile.decode(String.self, at: 2).map { "income band \($0)" },
                try profile.decode(Bool.self, at: 4) == true ? "channels \(try profile.decode(String.self, at: 3).flatMap { $0.isEmpty ? nil : $0 } ?? "none")" : nil,
                try profile.decode(String.self, at: 5).flatMap { $0 == "{}" ? nil : "other answers \($0)" },
            ].compactMap { $0 }
            header.append("profile (\(try profile.decode(Int.self, at: 6) ?? 0) surveys): " + parts.joined(separator: "; "))
        }
        let responses = try connection.query(
            "SELECT submitted_at, survey_id, message_id FROM survey_responses WHERE store_id = $1 AND shopper_id = $2", [store, shopperID]
        ).map { row in
            (try row.decode(Date.self, at: 0) ?? .distantPast, 0,
             "survey    \(try row.decode(String.self, at: 1) ?? "") answered  [message \(try row.decode(String.self, at: 2) ?? "")]")
        }
        return (header, responses)
    }

    /// The shopper's orders (ReceiptWorker's, where its tables are in this database): the shared shopper's, and any
    /// placed with the address asked about.
    static func orders(store: String, shopperID: Int64?, email: String?, connection: PostgresConnection) throws -> [(Date, Int, String)] {
        guard shopperID != nil || email != nil,
            try connection.query("SELECT to_regclass('receipt_orders') IS NOT NULL").first?.decode(Bool.self, at: 0) == true
        else { return [] }
        var facts: [(Date, Int, String)] = []
        for row in try connection.query(
            """
            SELECT o.order_id, o.status, o.placed_at, o.total, o.currency, o.message_id,
                   (SELECT count(*) FROM receipt_order_items i WHERE i.store_id = o.store_id AND i.order_id = o.order_id) AS items
            FROM receipt_orders o WHERE o.store_id = $1 AND (o.shopper_id = $2 OR o.email = $3)
            """, [store, shopperID, email])
        {
            let currency = try row.decode(String.self, "currency") ?? ""
            let total = try row.decode(Int64.self, "total").map { Money(minorUnits: $0, currency: currency).text + " " + currency } ?? "no total"
            let text = "order     \(try row.decode(String.self, "order_id") ?? "") \(try row.decode(String.self, "status") ?? ""): \(try row.decode(Int.self, "items") ?? 0) items, total \(total)  [message \(try row.decode(String.self, "message_id") ?? "")]"
            facts.append((try row.decode(Date.self, "placed_at") ?? .distantPast, 0, text))
        }
        return facts
    }

    /// The shopper's scheduled steps, at the time each is (or was) due, with its state.
    static func steps(store: String, shopperID: Int64?, email: String?, connection: PostgresConnection) throws -> [(Date, Int, String)] {
        guard shopperID != nil || email != nil else { return [] }
        return try connection.query(
            """
            SELECT template, journey, order_id, state, reason, due_at FROM rapport_scheduled_steps
            WHERE store_id = $1 AND (shopper_id = $2 OR email = $3)
            """, [store, shopperID, email]
        ).map { row in
            let state = try row.decode(String.self, "state") ?? ""
            let reason = try row.decode(String.self, "reason").map { state == "sent" ? "" : " — \($0)" } ?? ""
            let order = try row.decode(String.self, "order_id").map { ", order \($0)" } ?? ""
            return (try row.decode(Date.self, "due_at") ?? .distantPast, 3,
                    "step      \(try row.decode(String.self, "template") ?? "") (\(try row.decode(String.self, "journey") ?? "")\(order)): \(state)\(reason)")
        }
    }
}
