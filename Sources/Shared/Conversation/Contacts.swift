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
        /// Whether the contact is in `rapport_contacts` yet: `false` for one that
        /// ``Contacts/load(_:sentSince:creating:connection:)`` allocated for a new address (its id from the table's
        /// sequence, its unsubscribe token), which ``Contacts/save(_:connection:)`` inserts with the state the batch
        /// gave it.
        public internal(set) var isStored = true

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
    static let columns: PostgresQuery = """
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
            SELECT u.store_id, u.email, true FROM \(.unnest(keys, [.init("store_id", "text", \.storeID), .init("email", "text", \.email)]))
            ON CONFLICT (store_id, email) DO UPDATE
            SET transactional_ok = c.suppression IS DISTINCT FROM 'all' AND c.erased_at IS NULL,
                updated_at = CASE WHEN c.transactional_ok THEN c.updated_at ELSE now() END
            RETURNING \(columns)
            """)
        {
            let contact = try Contact(row)
            contacts[Key(storeID: contact.storeID, email: contact.email)] = contact
        }
        return contacts
    }

    /// The contacts of `addresses`, with their marketing sends since `since`: what the policy reads before it decides
    /// (a batch's events, a scheduled message at the moment of sending).
    /// - Parameter creating: Whether an address without a contact gets one (with no permission yet) — a worker that
    ///   records what the shopper said about the address (CaptureWorker) — or is left out. A new contact is allocated
    ///   in the same statement (id and unsubscribe token, ``Contact/isStored`` `false`) and written once, with its
    ///   state, by ``save(_:connection:)``: an empty row inserted here and updated at the end of the batch had cost
    ///   three times as much (measured on pure captures: 10 ms to insert and 18 ms to update 780 contacts).
    /// - Throws: ``PostgresError``.
    public static func load(_ addresses: Set<Key>, sentSince since: Date, creating: Bool = false, connection: PostgresConnection) throws -> [Key: Contact] {
        guard !addresses.isEmpty else { return [:] }
        let keys = Array(addresses)
        var contacts: [Key: Contact] = [:]
        var byID: [Int64: Key] = [:]
        for row in try connection.query(
            """
            SELECT u.n, c.*,
                   CASE WHEN c.contact_id IS NULL AND \(creating) THEN nextval(pg_get_serial_sequence('rapport_contacts', 'contact_id')) END AS new_id,
                   CASE WHEN c.contact_id IS NULL AND \(creating) THEN replace(gen_random_uuid()::text, '-', '') END AS new_token
            FROM unnest(\(PostgresArray(keys.map(\.storeID)))::text[], \(PostgresArray(keys.map(\.email)))::text[]) WITH ORDINALITY AS u(store_id, email, n)
            LEFT JOIN LATERAL (SELECT \(columns) FROM rapport_contacts c WHERE c.store_id = u.store_id AND c.email = u.email OFFSET 0) c ON true
            """)
        {
            let n: Int = try row.decode("n")
            guard keys.indices.contains(n - 1) else { continue }
            let key = keys[n - 1]
            if try row.decode("contact_id", as: Int64?.self) != nil {
                let contact = try Contact(row)
                contacts[key] = contact
                byID[contact.contactID] = key
            } else if let id = try row.decode("new_id", as: Int64?.self), let token = try row.decode("new_token", as: String?.self) {
                var contact = Contact(contactID: id, storeID: key.storeID, email: key.email, unsubscribeToken: token)
                contact.isStored = false
                contacts[key] = contact
            }
        }
        guard !byID.isEmpty else { return contacts }
        for (id, at) in try connection.query(
            """
            SELECT contact_id, decided_at FROM rapport_contact_decisions
            WHERE contact_id = ANY(\(PostgresArray(Array(byID.keys)))::bigint[]) AND decision = 'sent' AND category = 'marketing' AND decided_at > \(since)
            """
        ).decode((Int64, Date).self) {
            guard let key = byID[id] else { continue }
            contacts[key]?.sentMarketing.append(at)
        }
        return contacts
    }

    /// Writes `contacts`' permission state inside the caller's transaction: those not stored yet are inserted (plainly:
    /// should another transaction have created the address meanwhile, ``PostgresError/Code/concurrentInsert`` has the
    /// batch done again), the others updated. In key order, so that two transactions wait for each other rather than
    /// deadlock.
    /// - Throws: ``PostgresError``.
    public static func save(_ contacts: some Collection<Contact>, connection: PostgresConnection) throws {
        let sorted = contacts.sorted { ($0.storeID, $0.email) < ($1.storeID, $1.email) }
        let key: [PostgresColumn<Contact>] = [.init("store_id", "text", \.storeID), .init("contact_id", "bigint", \.contactID)]
        let state: [PostgresColumn<Contact>] = [
            .init("transactional_ok", "boolean", \.permission.transactional), .init("marketing_consent", "boolean", \.permission.marketing),
            .init("consent_level", "text", \.consentLevel), .init("awaiting_confirmation", "boolean", \.permission.awaitingConfirmation),
            .init("suppression", "text") { $0.permission.suppression?.rawValue }, .init("soft_bounce_streak", "integer", \.softBounceStreak),
            .init("time_zone", "text", \.permission.timeZone), .init("locale", "text", \.locale),
        ]
        let new = sorted.filter { !$0.isStored }
        if !new.isEmpty {
            try connection.insertNew(
                "contacts",
                .insert(
                    into: "rapport_contacts", new, key + state + [.init("email", "text", \.email), .init("unsubscribe_token", "text", \.unsubscribeToken)],
                    overridingSystemValue: true))
        }
        let stored = sorted.filter(\.isStored)
        guard !stored.isEmpty else { return }
        // A plain join on the primary key: the planner knows the batch's size (unnest's row estimate) and probes the
        // index once the table is large, hashing over a sequential scan only while that is cheaper (10,000 contacts).
        // No `= ANY` filters beside it: on both key columns PostgreSQL 15 costs the index scan as every pair of the
        // arrays' elements (700 × 700 probes for a batch of 700), and chose a sequential scan of a million contacts
        // for it (141 ms a batch; CapturePlanTests with batches of that size).
        try connection.execute(
            """
            UPDATE rapport_contacts c SET \(.assignments(state)), updated_at = now()
            FROM \(.unnest(stored, key + state))
            WHERE c.store_id = u.store_id AND c.contact_id = u.contact_id
            """)
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
        self.init(
            contactID: try row.decode("contact_id"), storeID: try row.decode("store_id"), email: try row.decode("email"),
            permission: ContactPermission(
                transactional: try row.decode("transactional_ok"), marketing: try row.decode("marketing_consent"),
                awaitingConfirmation: try row.decode("awaiting_confirmation"),
                suppression: try row.decode("suppression", as: String?.self).flatMap(ContactPermission.Suppression.init(rawValue:)),
                erased: try row.decode("erased"), timeZone: try row.decode("time_zone")),
            locale: try row.decode("locale"), unsubscribeToken: try row.decode("unsubscribe_token"),
            consentLevel: try row.decode("consent_level"), softBounceStreak: try row.decode("soft_bounce_streak"))
    }
}
