import Foundation

/// One shopper's timeline across the fleet — events, consent, orders, surveys, every command and every decision not to
/// send, with its reason: the answer to "why did (or didn't) this shopper get this email?".
///
/// Each part is read by the module that owns its tables. This type reads the shared ones (`rapport_identities`,
/// `rapport_contacts`, `rapport_contact_decisions`, `rapport_scheduled_steps`); each worker contributes its own part
/// through a function its migrations create, found in the database rather than named here:
/// - `<prefix>_shopper_timeline(store text, shopper bigint, email text)` returning `(at timestamptz, rank integer,
///   line text)`: a fact at `at` (`rank` orders the facts of one moment), or a header line where `at` is `NULL`;
/// - optionally `<prefix>_shopper_contact(store text, shopper bigint)` returning the contact the worker keeps for the
///   shopper (CaptureWorker's: that of the address it last captured).
///
/// A worker whose tables are not in the database simply has no part: the fleet's workers may share one database or not.
public enum ShopperTimeline {
    /// A fact of the timeline: when, its order among the facts of that moment, and its text.
    typealias Fact = (at: Date, rank: Int, line: String)

    /// The timeline as printable lines: a header with the current permission state and what the workers keep of the
    /// shopper, then one line per fact, oldest first.
    /// - Throws: ``PostgresError``.
    public static func lines(of identity: ShopperIdentity, connection: PostgresConnection) throws -> [String] {
        let store = identity.store
        let email = identity.kind == .email ? identity.value : nil
        let shopperID = try connection.query(
            "SELECT shopper_id FROM rapport_identities WHERE store_id = \(store) AND kind = \(identity.kind.rawValue) AND value = \(identity.value)"
        ).first?.decode("shopper_id", as: Int64.self)
        let parts = try workerParts(connection: connection)
        let contactID = try contact(store: store, email: email, shopperID: shopperID, providers: parts.contacts, connection: connection)
        var header: [String] = []
        var facts: [Fact] = []
        for name in parts.timelines {
            for (at, rank, line) in try connection.query(
                "SELECT at, rank, line FROM \(identifier: name)(\(store)::text, \(shopperID)::bigint, \(email)::text) ORDER BY rank"
            ).decode((Date?, Int, String).self) {
                if let at { facts.append((at, rank, line)) } else { header.append(line) }
            }
        }
        guard shopperID != nil || contactID != nil || !facts.isEmpty else {
            return ["no shopper with \(identity.kind.rawValue) \(identity.value) in store \(store)"]
        }
        var lines = ["shopper \(shopperID.map { "capture:\($0)" } ?? "(none)") in store \(store), by \(identity.kind.rawValue)"]
        if let contactID, let now = try permission(store: store, contactID: contactID, connection: connection) { lines.append(now) }
        lines += header
        // The shared facts first, so that among facts of one moment and rank the order stays: decisions and steps,
        // then each worker's in the order of their names.
        let shared =
            try decisions(store: store, contactID: contactID, shopperID: shopperID, connection: connection)
            + steps(store: store, shopperID: shopperID, email: email, connection: connection)
        let ordered = (shared + facts).enumerated().sorted { ($0.element.at, $0.element.rank, $0.offset) < ($1.element.at, $1.element.rank, $1.offset) }
        return lines + ordered.map { "\($0.element.at.rfc3339)  \($0.element.line)" }
    }

    /// The workers' timeline and contact functions in this database, by name.
    static func workerParts(connection: PostgresConnection) throws -> (timelines: [String], contacts: [String]) {
        let names = try connection.query(
            """
            SELECT proname FROM pg_proc
            WHERE (proname LIKE '%\\_shopper\\_timeline' OR proname LIKE '%\\_shopper\\_contact') AND pg_function_is_visible(oid)
            ORDER BY proname
            """
        ).decode(String.self)
        return (names.filter { $0.hasSuffix("_shopper_timeline") }, names.filter { $0.hasSuffix("_shopper_contact") })
    }

    /// The contact the timeline is about: the address's, or the one a worker keeps for the shopper, or that of the
    /// shopper's known address.
    static func contact(store: String, email: String?, shopperID: Int64?, providers: [String], connection: PostgresConnection) throws -> Int64? {
        func contact(of email: String) throws -> Int64? {
            try connection.query("SELECT contact_id FROM rapport_contacts WHERE store_id = \(store) AND email = \(email)").first?
                .decode("contact_id", as: Int64.self)
        }
        if let email { return try contact(of: email) }
        guard let shopperID else { return nil }
        for name in providers {
            if let kept = try connection.query("SELECT \(identifier: name)(\(store)::text, \(shopperID)::bigint) AS contact_id").first?
                .decode("contact_id", as: Int64?.self)
            {
                return kept
            }
        }
        // A shopper no worker keeps a contact for (an order, a survey): the contact of their known address.
        guard let email = try ShopperResolver.known([(store, shopperID)], connection: connection)[shopperID]?.email else { return nil }
        return try contact(of: email)
    }

    /// The header line with the contact's permission state now.
    static func permission(store: String, contactID: Int64, connection: PostgresConnection) throws -> String? {
        guard
            let contact = try connection.query(
                """
                SELECT transactional_ok, marketing_consent, consent_level, awaiting_confirmation, suppression, soft_bounce_streak,
                       erased_at IS NOT NULL, time_zone
                FROM rapport_contacts WHERE store_id = \(store) AND contact_id = \(contactID)
                """
            ).first
        else { return nil }
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
        return "now: " + flags.joined(separator: "; ")
    }

    /// Every decision about the contact or the shopper: sent, deferred, dropped, with its reason.
    static func decisions(store: String, contactID: Int64?, shopperID: Int64?, connection: PostgresConnection) throws -> [Fact] {
        let subject = shopperID.map { "capture:\($0)" } ?? ""
        return try connection.query(
            """
            SELECT decided_at, decision, template, category, reason, command_id, causation_id, not_before, worker
            FROM rapport_contact_decisions
            WHERE store_id = \(store) AND (contact_id = \(contactID) OR subject = \(subject))
            """
        ).decode((Date, String, String, String, String, String?, String, Date?, String).self).map {
            decidedAt, decision, template, category, reason, commandID, causationID, notBefore, worker in
            var text = "\(decision.padding(toLength: 10, withPad: " ", startingAt: 0))\(template) (\(category))"
            if decision != "sent" { text += " — \(reason)" }
            if let notBefore { text += ", not before \(notBefore.rfc3339)" }
            if let commandID { text += "  [command \(commandID)]" }
            text += "  [caused by \(causationID), \(worker)]"
            return (decidedAt, 2, text)
        }
    }

    /// The shopper's scheduled steps, at the time each is (or was) due, with its state.
    static func steps(store: String, shopperID: Int64?, email: String?, connection: PostgresConnection) throws -> [Fact] {
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
