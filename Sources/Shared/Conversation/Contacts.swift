import Foundation

/// The permission state of contacts (`rapport_contacts`) as every worker reads it at the moment of sending.
public enum Contacts {
    /// One contact: who, what the policy may send, and how to write to them.
    public struct Contact: Sendable, Equatable {
        public var contactID: Int64
        public var storeID: String
        public var email: String
        public var permission: ContactPermission
        public var locale: String?
        public var unsubscribeToken: String
        /// `single`, `confirmed`, `unknown` or `soft`; `nil` before any consent was recorded.
        public var consentLevel: String?
        /// Soft bounces in a row (a streak suppresses the address).
        public var softBounceStreak = 0
        /// When its marketing emails were sent, inside the window ``Contacts/load(_:sentSince:creating:connection:)`` was
        /// asked for (the pressure caps count them).
        public var sentMarketing: [Date] = []

        public init(
            contactID: Int64, storeID: String, email: String, permission: ContactPermission = ContactPermission(), locale: String? = nil,
            unsubscribeToken: String, consentLevel: String? = nil, softBounceStreak: Int = 0, sentMarketing: [Date] = []
        ) {
            self.contactID = contactID
            self.storeID = storeID
            self.email = email
            self.permission = permission
            self.locale = locale
            self.unsubscribeToken = unsubscribeToken
            self.consentLevel = consentLevel
            self.softBounceStreak = softBounceStreak
            self.sentMarketing = sentMarketing
        }
    }

    /// The columns every reading of a contact returns (``Contact/init(_:)`` reads them).
    static let columns = """
        store_id, email, contact_id, transactional_ok, marketing_consent, consent_level, awaiting_confirmation, suppression, soft_bounce_streak,
        erased_at IS NOT NULL AS erased, time_zone, locale, unsubscribe_token
        """

    /// The contacts of addresses a shopper has just given for an order (created where new): giving the address for
    /// an order permits transactional mail to it unless all mail to it has ended (hard bounce, erasure). Keys in
    /// order, so that two transactions wait for each other rather than deadlock.
    /// - Returns: Each address's contact, by `(store, email)`.
    /// - Throws: ``PostgresError``.
    public static func given(_ addresses: Set<Key>, connection: PostgresConnection) throws -> [Key: Contact] {
        guard !addresses.isEmpty else { return [:] }
        let keys = addresses.sorted { ($0.storeID, $0.email) < ($1.storeID, $1.email) }
        var contacts: [Key: Contact] = [:]
        for row in try connection.query(
            """
            INSERT INTO rapport_contacts AS c (store_id, email, transactional_ok)
            SELECT u.store_id, u.email, true FROM unnest($1::text[], $2::text[]) AS u(store_id, email)
            ON CONFLICT (store_id, email) DO UPDATE
            SET transactional_ok = c.suppression IS DISTINCT FROM 'all' AND c.erased_at IS NULL,
                updated_at = CASE WHEN c.transactional_ok THEN c.updated_at ELSE now() END
            RETURNING \(columns)
            """, [PostgresArray(keys.map(\.storeID)), PostgresArray(keys.map(\.email))])
        {
            let contact = try Contact(row)
            contacts[Key(storeID: contact.storeID, email: contact.email)] = contact
        }
        return contacts
    }

    /// The contacts of `addresses`, with their marketing sends since `since`: what the policy reads before it decides
    /// (a batch's events, a scheduled message at the moment of sending).
    /// - Parameter creating: Whether an address without a contact gets one (with no permission yet) — a worker that
    ///   records what the shopper said about the address (CaptureWorker) — or is left out. Created in key order, so
    ///   that two transactions wait for each other rather than deadlock.
    /// - Throws: ``PostgresError``.
    public static func load(_ addresses: Set<Key>, sentSince since: Date, creating: Bool = false, connection: PostgresConnection) throws -> [Key: Contact] {
        guard !addresses.isEmpty else { return [:] }
        let keys = addresses.sorted { ($0.storeID, $0.email) < ($1.storeID, $1.email) }
        if creating {
            try connection.execute(
                """
                INSERT INTO rapport_contacts (store_id, email) SELECT * FROM unnest($1::text[], $2::text[])
                ON CONFLICT (store_id, email) DO NOTHING
                """, [PostgresArray(keys.map(\.storeID)), PostgresArray(keys.map(\.email))])
        }
        var contacts: [Key: Contact] = [:]
        var byID: [Int64: Key] = [:]
        for row in try connection.query(
            """
            SELECT c.*
            FROM unnest($1::text[], $2::text[]) AS u(store_id, email)
            CROSS JOIN LATERAL (SELECT \(columns) FROM rapport_contacts c WHERE c.store_id = u.store_id AND c.email = u.email OFFSET 0) c
            """, [PostgresArray(keys.map(\.storeID)), PostgresArray(keys.map(\.email))])
        {
            let contact = try Contact(row)
            let key = Key(storeID: contact.storeID, email: contact.email)
            contacts[key] = contact
            byID[contact.contactID] = key
        }
        guard !byID.isEmpty else { return contacts }
        for row in try connection.query(
            """
            SELECT contact_id, decided_at FROM rapport_contact_decisions
            WHERE contact_id = ANY($1::bigint[]) AND decision = 'sent' AND category = 'marketing' AND decided_at > $2
            """, [PostgresArray(Array(byID.keys)), since])
        {
            guard let id = try row.decode(Int64.self, at: 0), let at = try row.decode(Date.self, at: 1), let key = byID[id] else { continue }
            contacts[key]?.sentMarketing.append(at)
        }
        return contacts
    }

    /// A contact's key: one address in one store.
    public struct Key: Sendable, Hashable {
        public var storeID: String
        public var email: String

        public init(storeID: String, email: String) {
            self.storeID = storeID
            self.email = email
        }
    }
}

extension Contacts.Contact {
    /// From a row of ``Contacts/columns``.
    init(_ row: PostgresRow) throws {
        guard let store = try row.decode(String.self, "store_id"), let email = try row.decode(String.self, "email"),
            let id = try row.decode(Int64.self, "contact_id")
        else { throw PostgresError(code: .decoding, message: "a contact row without its key") }
        self.init(
            contactID: id, storeID: store, email: email,
            permission: ContactPermission(
                transactional: try row.decode(Bool.self, "transactional_ok") ?? false, marketing: try row.decode(Bool.self, "marketing_consent") ?? false,
                awaitingConfirmation: try row.decode(Bool.self, "awaiting_confirmation") ?? false,
                suppression: try row.decode(String.self, "suppression").flatMap(ContactPermission.Suppression.init(rawValue:)),
                erased: try row.decode(Bool.self, "erased") ?? false, timeZone: try row.decode(String.self, "time_zone")),
            locale: try row.decode(String.self, "locale"), unsubscribeToken: try row.decode(String.self, "unsubscribe_token") ?? "",
            consentLevel: try row.decode(String.self, "consent_level"), softBounceStreak: try row.decode(Int.self, "soft_bounce_streak") ?? 0)
    }
}
