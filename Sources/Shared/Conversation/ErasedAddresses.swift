/// The addresses erased in stores that keep a salted hash of them (`keep_erasure_hash`), so that an erased address
/// is refused when it comes back — in a history import, a replay, a storefront's later event — by every worker: the
/// pipeline applies none of its events (``PipelineConfiguration/erasedAddresses``). The hash is
/// SHA-256(`ERASURE_HASH_SALT` + address) in hex, computed by PostgreSQL; the address itself is kept nowhere.
public struct ErasedAddresses: Sendable {
    /// The secret prefix of every hash.
    let salt: String
    let stores: StoreDirectory

    /// Reads `ERASURE_HASH_SALT`; `nil` when no store keeps erased addresses' hashes.
    /// - Throws: ``ConfigurationError`` naming `ERASURE_HASH_SALT` when a store keeps them and it is unset or shorter
    ///   than 16 characters.
    public init?(stores: StoreDirectory, environment: Environment) throws {
        guard stores.allSettings.contains(where: \.keepErasureHash) else { return nil }
        guard let salt = try environment.string("ERASURE_HASH_SALT"), salt.count >= 16 else {
            throw ConfigurationError("ERASURE_HASH_SALT", "must be set (16 characters or more) when a store keeps erased addresses' hashes (keep_erasure_hash)")
        }
        self.salt = salt
        self.stores = stores
    }

    /// A store and an address: a contact's key.
    public typealias Key = Contacts.Key

    /// Of `candidates`, those erased in a store that keeps the hashes: one statement, a primary-key probe each.
    /// - Throws: ``PostgresError``.
    public func erased(_ candidates: Set<Key>, connection: PostgresConnection) throws -> Set<Key> {
        let kept = candidates.filter { stores.settings(for: $0.storeID).keepErasureHash }.sorted { ($0.storeID, $0.email) < ($1.storeID, $1.email) }
        guard !kept.isEmpty else { return [] }
        let rows = try connection.query(
            """
            SELECT u.store_id, u.email FROM unnest(\(PostgresArray(kept.map(\.storeID)))::text[], \(PostgresArray(kept.map(\.email)))::text[]) AS u(store_id, email)
            JOIN rapport_erased_addresses e ON e.store_id = u.store_id AND e.email_hash = encode(sha256(convert_to(\(salt)::text || u.email, 'UTF8')), 'hex')
            """)
        return Set(try rows.decode((String, String).self).map { Key(storeID: $0, email: $1) })
    }

    /// `events` less those whose message carries an address erased in a store that keeps the hashes: what no worker
    /// applies. One statement, and none when no event carries an address of such a store.
    /// - Throws: ``PostgresError``.
    public func withoutErased<Event>(_ events: [InboundEvent<Event>], connection: PostgresConnection) throws -> [InboundEvent<Event>] {
        func key(_ event: InboundEvent<Event>) -> Key? {
            event.message.email.flatMap(EmailAddress.init).map { Key(storeID: event.message.storeID, email: $0.value) }
        }
        let erased = try erased(Set(events.compactMap(key)), connection: connection)
        guard !erased.isEmpty else { return events }
        return events.filter { event in key(event).map { !erased.contains($0) } ?? true }
    }

    /// Records `key` as erased, if its store keeps the hashes.
    /// - Throws: ``PostgresError``.
    public func record(_ key: Key, connection: PostgresConnection) throws {
        guard stores.settings(for: key.storeID).keepErasureHash else { return }
        try connection.execute(
            """
            INSERT INTO rapport_erased_addresses (store_id, email_hash)
            VALUES (\(key.storeID), encode(sha256(convert_to(\(salt)::text || \(key.email)::text, 'UTF8')), 'hex')) ON CONFLICT DO NOTHING
            """)
    }
}
