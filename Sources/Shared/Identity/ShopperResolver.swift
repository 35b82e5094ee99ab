import Foundation

/// One identity of a shopper in a store: a user id, an anonymous id or a normalised email.
public struct ShopperIdentity: Hashable, Sendable {
    public enum Kind: String, Sendable {
        case userID = "user_id"
        case anonymousID = "anonymous_id"
        case email
    }

    public var store: String
    public var kind: Kind
    public var value: String

    public init(store: String, kind: Kind, value: String) {
        self.store = store
        self.kind = kind
        self.value = value
    }

    /// What an event carries: its userId and anonymousId (empty ones ignored) and the address it is about.
    public static func carried(by message: SegmentMessage, email: EmailAddress?) -> [ShopperIdentity] {
        var identities: [ShopperIdentity] = []
        if let user = message.userID, !user.isEmpty { identities.append(ShopperIdentity(store: message.storeID, kind: .userID, value: user)) }
        if let anonymous = message.anonymousID, !anonymous.isEmpty {
            identities.append(ShopperIdentity(store: message.storeID, kind: .anonymousID, value: anonymous))
        }
        if let email { identities.append(ShopperIdentity(store: message.storeID, kind: .email, value: email.value)) }
        return identities
    }
}

/// One shopper across workers: resolves the identities each event of a batch carries to the store's shopper
/// (`rapport_shoppers`, `rapport_identities`), creating shoppers, linking new identities and folding an anonymous
/// shopper into the known one it turns out to be — the same way in every worker, so that an order, a survey, consent
/// and the timeline belong to one shopper. Runs inside the batch's transaction.
public enum ShopperResolver {
    /// What a batch resolved to.
    public struct Resolution: Sendable {
        /// Each event's shopper, in the batch's order.
        public var shoppers: [Int64]
        /// The shoppers created set-based by this batch: no worker has state of them yet.
        public var created: Set<Int64>
    }

    /// Each event's shopper, in order, set-based where the batch allows it:
    /// - an event whose identities are all linked already, to one shopper, is that shopper (nothing written);
    /// - an event whose identities are all new and carried by no other event of the batch is a new shopper: those are
    ///   created together, with their identities, in two statements;
    /// - every other event (a new identity for a known shopper, two shoppers to merge, identities shared within the
    ///   batch) goes through `rapport_resolve_shoppers`, in order, with every event of a shopper it touches.
    ///
    /// Measured on pure captures of new shoppers: the per-event PL/pgSQL loop (three probes, an insert or two per
    /// event) was most of a batch's time.
    ///
    /// - Parameter events: Each event's store and the identities it carries (of that store). An event that carries
    ///   none gets a shopper of its own.
    /// - Throws: ``PostgresError``.
    public static func resolve(_ batch: [(store: String, identities: [ShopperIdentity])], connection: PostgresConnection) throws -> Resolution {
        let events = batch.map(\.identities)
        let known = try linkedShoppers(Set(events.joined()), connection: connection)
        var uses: [ShopperIdentity: Int] = [:]
        for identity in events.joined() { uses[identity, default: 0] += 1 }

        var resolved = [Int64?](repeating: nil, count: events.count)
        var fresh: [Int] = []
        var sequential: [Int] = []
        for (index, carried) in events.enumerated() {
            let shoppers = Set(carried.compactMap { known[$0] })
            if !carried.isEmpty, shoppers.count == 1, carried.allSatisfy({ known[$0] != nil }) {
                resolved[index] = shoppers.first
            } else if !carried.isEmpty, shoppers.isEmpty, carried.allSatisfy({ uses[$0] == 1 }) {
                fresh.append(index)
            } else {
                sequential.append(index)
            }
        }
        // A shopper the sequential path may link or merge is resolved there for all of its events.
        let touched = Set(sequential.flatMap { events[$0].compactMap { known[$0] } })
        if !touched.isEmpty {
            for index in resolved.indices where resolved[index].map(touched.contains) == true {
                resolved[index] = nil
                sequential.append(index)
            }
            sequential.sort()
        }
        try createShoppers(fresh, identities: events, into: &resolved, connection: connection)
        let created = Set(fresh.compactMap { resolved[$0] })
        if !sequential.isEmpty {
            for (index, shopper) in zip(sequential, try resolveSequentially(sequential.map { batch[$0] }, connection: connection)) {
                resolved[index] = shopper
            }
        }
        let shoppers = try resolved.map { shopper in
            guard let shopper else { throw PostgresError(code: .decoding, message: "an event was left without a shopper") }
            return shopper
        }
        return Resolution(shoppers: shoppers, created: created)
    }

    /// The shopper each of `identities` is linked to, where it is, without creating anything: one primary-key probe
    /// per identity. A `LATERAL` probe, because with `value = ANY(…)` the planner trusted stale statistics (no user ids
    /// yet) and filtered a store's every user id instead of probing (found by the plan test: 2 million rows read for
    /// 700 events).
    public static func linkedShoppers(_ identities: Set<ShopperIdentity>, connection: PostgresConnection) throws -> [ShopperIdentity: Int64] {
        guard !identities.isEmpty else { return [:] }
        let keys = Array(identities)
        var linked: [ShopperIdentity: Int64] = [:]
        let (stores, kinds, values) = (PostgresArray(keys.map(\.store)), PostgresArray(keys.map(\.kind.rawValue)), PostgresArray(keys.map(\.value)))
        for (n, shopper) in try connection.query(
            """
            SELECT u.n, i.shopper_id
            FROM unnest(\(stores)::text[], \(kinds)::text[], \(values)::text[]) WITH ORDINALITY AS u(store_id, kind, value, n)
            CROSS JOIN LATERAL (
                SELECT r.shopper_id FROM rapport_identities r WHERE r.store_id = u.store_id AND r.kind = u.kind AND r.value = u.value
                OFFSET 0) i
            """
        ).decode((Int, Int64).self) where keys.indices.contains(n - 1) {
            linked[keys[n - 1]] = shopper
        }
        return linked
    }

    /// A shopper's identities as the contract's commands name them (`shopper`: user id, anonymous id, email).
    public struct Known: Sendable, Equatable {
        public var userID: String?
        public var anonymousID: String?
        public var email: String?

        public init(userID: String? = nil, anonymousID: String? = nil, email: String? = nil) {
            self.userID = userID
            self.anonymousID = anonymousID
            self.email = email
        }

        /// The contract's shopper key in `store`: `store/(userId ?? anonymousId ?? email)`.
        public func shopperKey(store: String) -> String { store + "/" + (userID ?? anonymousID ?? email ?? "") }

        /// `{"user_id", "anonymous_id", "email"}`, as the contract's commands and operator commands print a shopper.
        public var json: JSONValue {
            .object([
                "user_id": userID.map(JSONValue.string) ?? .null, "anonymous_id": anonymousID.map(JSONValue.string) ?? .null,
                "email": email.map(JSONValue.string) ?? .null,
            ])
        }
    }

    /// The identities each of `shoppers` has, by shopper (the first of a kind, should a shopper have two): index probes
    /// on `(store_id, shopper_id, kind)`.
    /// - Throws: ``PostgresError``.
    public static func known(_ shoppers: [(store: String, shopperID: Int64)], connection: PostgresConnection) throws -> [Int64: Known] {
        guard !shoppers.isEmpty else { return [:] }
        var result: [Int64: Known] = [:]
        for (shopper, kind, value) in try connection.query(
            """
            SELECT u.shopper_id, k.kind, k.value
            FROM unnest(\(PostgresArray(shoppers.map(\.store)))::text[], \(PostgresArray(shoppers.map(\.shopperID)))::bigint[]) AS u(store_id, shopper_id)
            CROSS JOIN LATERAL (VALUES ('user_id'), ('anonymous_id'), ('email')) AS w(kind)
            CROSS JOIN LATERAL (
                SELECT r.kind, r.value FROM rapport_identities r WHERE r.store_id = u.store_id AND r.shopper_id = u.shopper_id AND r.kind = w.kind
                ORDER BY r.value LIMIT 1) k
            """
        ).decode((Int64, String, String).self) {
            var known = result[shopper] ?? Known()
            switch kind {
            case "user_id": known.userID = value
            case "anonymous_id": known.anonymousID = value
            default: known.email = value
            }
            result[shopper] = known
        }
        return result
    }

    /// Creates a shopper for each event of `indices` (all its identities new), with its identities, in two
    /// statements, filling `resolved`. The identities were looked up and found unlinked, so they are inserted plainly;
    /// should another transaction link one of them meanwhile, the insert throws ``PostgresError/Code/concurrentInsert``
    /// and the batch is done again, finding that link.
    private static func createShoppers(
        _ indices: [Int], identities: [[ShopperIdentity]], into resolved: inout [Int64?], connection: PostgresConnection
    ) throws {
        guard !indices.isEmpty else { return }
        let stores = indices.map { identities[$0][0].store }
        // Identity values are handed out in insertion order, which the ORDER BY fixes: sorted, they follow `indices`.
        let created = try connection.query(
            """
            INSERT INTO rapport_shoppers (store_id)
            SELECT u.store_id FROM unnest(\(PostgresArray(stores))::text[]) WITH ORDINALITY AS u(store_id, n) ORDER BY u.n
            RETURNING shopper_id
            """
        ).decode(Int64.self).sorted()
        guard created.count == indices.count else { throw PostgresError(code: .decoding, message: "created \(created.count) of \(indices.count) shoppers") }
        var links: [(identity: ShopperIdentity, shopper: Int64)] = []
        for (index, shopper) in zip(indices, created) {
            resolved[index] = shopper
            for identity in identities[index] { links.append((identity, shopper)) }
        }
        // In key order, so that two transactions inserting overlapping identities wait on each other, never deadlock.
        links.sort { ($0.identity.store, $0.identity.kind.rawValue, $0.identity.value) < ($1.identity.store, $1.identity.kind.rawValue, $1.identity.value) }
        try connection.insertNew(
            "identities",
            .insert(
                into: "rapport_identities", links,
                [
                    .init("store_id", "text", \.identity.store), .init("kind", "text", \.identity.kind.rawValue), .init("value", "text", \.identity.value),
                    .init("shopper_id", "bigint", \.shopper),
                ]))
    }

    /// Each event's shopper through `rapport_resolve_shoppers` (one event at a time inside PostgreSQL: links new
    /// identities and merges shoppers in the batch's order). An identity it found unlinked and another transaction
    /// linked meanwhile fails the insert: ``PostgresError/Code/concurrentInsert``, and the batch is done again.
    private static func resolveSequentially(_ events: [(store: String, identities: [ShopperIdentity])], connection: PostgresConnection) throws -> [Int64] {
        func value(_ kind: ShopperIdentity.Kind) -> PostgresArray {
            PostgresArray(events.map { event in event.identities.first { $0.kind == kind }?.value })
        }
        let stores = PostgresArray(events.map(\.store))
        let rows = try connection.queryInsertingNew(
            "identities",
            """
            SELECT n, shopper_id FROM rapport_resolve_shoppers(\(stores)::text[], \(value(.userID))::text[], \(value(.anonymousID))::text[],
                                                               \(value(.email))::text[])
            ORDER BY n
            """)
        let ids = try rows.decode((Int, Int64).self).map(\.1)
        guard ids.count == events.count else { throw PostgresError(code: .decoding, message: "resolved \(ids.count) of \(events.count) events") }
        return ids
    }
}
