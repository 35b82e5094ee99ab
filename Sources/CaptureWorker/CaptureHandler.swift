import Foundation
import InboundEvents
import Shared

/// CaptureWorker's behaviour: for a batch of `shopper-events`, resolve each event's shopper, load their state and
/// their contacts' permissions, apply the events in order (``CaptureModel``), and write what changed — all
/// set-based, a fixed number of statements per batch whatever its size (erasures aside: one statement each).
struct CaptureHandler: PipelineHandler {
    let stores: StoreDirectory
    let topics: Topics
    /// The secret salt of erased addresses' hashes (`ERASURE_HASH_SALT`); required when a store keeps them.
    /// Where an erased address's hash is kept, for stores that keep them (the pipeline refuses their events).
    let erasedAddresses: ErasedAddresses?
    /// The longest contact-pressure window of any store: how far back marketing sends are loaded.
    let longestPressureWindow: TimeInterval

    static func longestPressureWindow(_ stores: StoreDirectory) -> TimeInterval {
        stores.allSettings.flatMap(\.pressureCaps).map(\.window.seconds).max() ?? 0
    }

    /// Reads `STORE_SETTINGS_FILE` and `ERASURE_HASH_SALT`.
    /// - Throws: ``ConfigurationError`` naming the variable.
    init(topics: Topics, environment: Environment) throws {
        stores = try StoreDirectory(environment: environment)
        longestPressureWindow = Self.longestPressureWindow(stores)
        self.topics = topics
        erasedAddresses = try ErasedAddresses(stores: stores, environment: environment)
    }

    func decode(_ message: SegmentMessage) throws(DecodeFailure) -> CaptureEvent {
        try CaptureEvent(message)
    }

    func handle(_ events: [InboundEvent<CaptureEvent>], connection: PostgresConnection) throws -> [OutboundCommand] {
        // Events of an erased address never reach here (PipelineConfiguration.erasedAddresses).
        let inbound = events
        guard !inbound.isEmpty else { return [] }
        let parsed = inbound.map(\.event)
        let identities = parsed.map { ShopperIdentity.carried(by: $0.message, email: $0.email) }
        let resolution = try ShopperResolver.resolve(zip(parsed, identities).map { ($0.message.storeID, $1) }, connection: connection)
        let shopperIDs = resolution.shoppers
        // An erasure ends the shopper: what the same person does afterwards begins a new one, as it would one event
        // at a time (the erasure deletes their identities, so the next event's resolve creates a shopper). The batch
        // is applied in two parts around the first erasure that later events of the batch resolve to.
        // For a store that keeps erased addresses' hashes, the pipeline would refuse the address's later events; the
        // second part is filtered the same way now that the first has recorded the erasure.
        if let split = Self.erasureFollowedBySameShopper(parsed, shopperIDs) {
            let before = try handle(Array(inbound[...split]), connection: connection)
            var after = Array(inbound[(split + 1)...])
            if let erasedAddresses { after = try erasedAddresses.withoutErased(after, connection: connection) }
            return before + (try handle(after, connection: connection))
        }
        // Shoppers created just now have no state to read; a shopper another worker created has none here yet. Both
        // start from the identities their events carry (the batch's write inserts their row).
        var stored: [Int64: String] = [:]
        for (event, id) in zip(parsed, shopperIDs) where !resolution.created.contains(id) { stored[id] = event.message.storeID }
        var shoppers = try loadShoppers(stored, connection: connection)
        for (index, id) in shopperIDs.enumerated() where shoppers[id] == nil {
            var shopper = ShopperState(shopperID: id, storeID: parsed[index].message.storeID)
            shopper.userID = identities[index].first { $0.kind == .userID }?.value
            shopper.anonymousID = identities[index].first { $0.kind == .anonymousID }?.value
            shoppers[id] = shopper
        }
        var addresses = Set(parsed.compactMap { event in event.email.map { CaptureModel.ContactKey(storeID: event.message.storeID, email: $0.value) } })
        for shopper in shoppers.values { if let email = shopper.email { addresses.insert(.init(storeID: shopper.storeID, email: email)) } }
        let earliest = parsed.map(\.message.timestamp).min() ?? Date()
        let contacts = try loadContacts(addresses, since: earliest, connection: connection)
        for (id, shopper) in shoppers where shopper.email.map({ contacts[.init(storeID: shopper.storeID, email: $0)] == nil }) ?? false {
            shoppers[id]?.email = nil
        }
        var model = CaptureModel(stores: stores, topics: topics, shoppers: shoppers, contacts: contacts, processedAt: Date(), makeToken: Self.randomToken)
        var commands: [OutboundCommand] = []
        for (event, shopperID) in zip(inbound, shopperIDs) {
            commands += model.apply(event.event, shopperID: shopperID).map(event.caused)
        }
        try write(model, connection: connection)
        return commands
    }

    /// The index of the first erasure whose shopper has a later event in the batch.
    static func erasureFollowedBySameShopper(_ events: [CaptureEvent], _ shoppers: [Int64]) -> Int? {
        var last: [Int64: Int] = [:]
        for (index, shopper) in shoppers.enumerated() { last[shopper] = index }
        return zip(events, shoppers).enumerated().first { index, pair in
            pair.0.action == .erasureRequested && (last[pair.1] ?? index) > index
        }?.offset
    }

    /// A 128-bit random token (hexadecimal), from the system's secure generator.
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let (high, low) = (generator.next() as UInt64, generator.next() as UInt64)
        return String(format: "%016llx%016llx", high, low)
    }

    // MARK: - Loading

    /// The state of `shoppers` (id → store), one probe of `capture_shoppers`' primary key each (`LATERAL … OFFSET 0`):
    /// the index is probed whatever the table's size or statistics. (With `= ANY` on both keys the planner read the
    /// whole table while it was small — as cheap there, 1.8 ms for 800 of 10,000 shoppers, but a plan that changes
    /// with the table's size.)
    private func loadShoppers(_ ids: [Int64: String], connection: PostgresConnection) throws -> [Int64: ShopperState] {
        guard !ids.isEmpty else { return [:] }
        var shoppers: [Int64: ShopperState] = [:]
        for row in try connection.query(
            """
            SELECT s.shopper_id, s.store_id, s.email, s.first_name, s.last_name, s.phone, s.traits, s.confirm_token,
                   s.welcome_state, s.welcome_offer_code, s.welcome_causation_id, s.browse_recommended_at, s.erased_at IS NOT NULL AS erased,
                   (SELECT value FROM rapport_identities i WHERE i.store_id = s.store_id AND i.shopper_id = s.shopper_id AND i.kind = 'user_id' LIMIT 1) AS user_id,
                   (SELECT value FROM rapport_identities i WHERE i.store_id = s.store_id AND i.shopper_id = s.shopper_id AND i.kind = 'anonymous_id' LIMIT 1)
                       AS anonymous_id,
                   (SELECT coalesce(json_agg(item ORDER BY last_at DESC), '[]') FROM (
                        SELECT item, last_at FROM capture_interests i
                        WHERE i.store_id = s.store_id AND i.shopper_id = s.shopper_id AND i.kind = 'product'
                        ORDER BY last_at DESC LIMIT 10) recent) AS recent_products
            FROM unnest(\(PostgresArray(ids.map(\.value)))::text[], \(PostgresArray(ids.map(\.key)))::bigint[]) AS u(store_id, shopper_id)
            CROSS JOIN LATERAL (SELECT * FROM capture_shoppers s WHERE s.store_id = u.store_id AND s.shopper_id = u.shopper_id OFFSET 0) s
            """)
        {
            var shopper = ShopperState(shopperID: try row.decode("shopper_id"), storeID: try row.decode("store_id"))
            shopper.email = try row.decode("email")
            shopper.firstName = try row.decode("first_name")
            shopper.lastName = try row.decode("last_name")
            shopper.phone = try row.decode("phone")
            shopper.traits = try row.decode("traits", as: JSONValue?.self)?.objectValue ?? [:]
            shopper.confirmToken = try row.decode("confirm_token")
            switch try row.decode("welcome_state", as: String?.self) {
            case "held":
                shopper.welcome = .held(
                    offerCode: try row.decode("welcome_offer_code", as: String?.self) ?? "",
                    causationID: try row.decode("welcome_causation_id", as: String?.self) ?? "")
            case "sent": shopper.welcome = .sent
            case "declined": shopper.welcome = .declined
            default: shopper.welcome = nil
            }
            shopper.browseRecommendedAt = try row.decode("browse_recommended_at")
            shopper.erased = try row.decode("erased")
            shopper.userID = try row.decode("user_id")
            shopper.anonymousID = try row.decode("anonymous_id")
            shopper.recentProducts = try row.decode("recent_products", as: JSONValue.self).arrayValue?.compactMap(\.stringValue) ?? []
            shoppers[shopper.shopperID] = shopper
        }
        return shoppers
    }

    /// The contacts of `addresses` (created where new) with their marketing sends inside the longest pressure window.
    private func loadContacts(_ addresses: Set<CaptureModel.ContactKey>, since earliest: Date, connection: PostgresConnection) throws
        -> [CaptureModel.ContactKey: ContactState]
    {
        try Contacts.load(addresses, sentSince: earliest.addingTimeInterval(-longestPressureWindow), creating: true, connection: connection)
    }

    // MARK: - Writing

    private func write(_ model: CaptureModel, connection: PostgresConnection) throws {
        if !model.ledger.isEmpty {
            try connection.execute(
                .insert(
                    into: "capture_consent_ledger", model.ledger,
                    [
                        .init("store_id", "text", \.storeID), .init("shopper_id", "bigint", \.shopperID), .init("message_id", "text", \.messageID),
                        .init("kind", "text", \.kind), .init("marketing", "boolean", \.marketing), .init("source", "text", \.source),
                        .init("opt_in_level", "text", \.optInLevel), .init("consent_text", "text", \.consentText),
                        .init("text_version", "text", \.textVersion), .init("ip", "text", \.ip), .init("user_agent", "text", \.userAgent),
                        .init("occurred_at", "timestamptz", \.occurredAt),
                    ]))
        }
        if !model.timeline.isEmpty {
            try connection.execute(
                .insert(
                    into: "capture_timeline", model.timeline,
                    [
                        .init("store_id", "text", \.storeID), .init("shopper_id", "bigint", \.shopperID), .init("message_id", "text", \.messageID),
                        .init("event", "text", \.event), .init("occurred_at", "timestamptz", \.occurredAt),
                    ]))
        }
        if !model.interests.isEmpty {
            let interests = model.interests.sorted {
                ($0.key.storeID, $0.key.shopperID, $0.key.kind, $0.key.item) < ($1.key.storeID, $1.key.shopperID, $1.key.kind, $1.key.item)
            }
            try connection.execute(
                .insert(
                    into: "capture_interests", as: "i", interests,
                    [
                        .init("store_id", "text", \.key.storeID), .init("shopper_id", "bigint", \.key.shopperID), .init("kind", "text", \.key.kind),
                        .init("item", "text", \.key.item), .init("views", "integer", \.value.views), .init("adds", "integer", \.value.adds),
                        .init("last_at", "timestamptz", \.value.lastAt),
                    ],
                    then: """
                        ON CONFLICT (store_id, shopper_id, kind, item) DO UPDATE
                        SET views = i.views + EXCLUDED.views, adds = i.adds + EXCLUDED.adds, last_at = greatest(i.last_at, EXCLUDED.last_at)
                        """))
        }
        // New contacts are written once, with their state; stored ones when the batch changed them.
        try Contacts.save(model.contacts.filter { !$0.value.isStored || model.touchedContacts.contains($0.key) }.values, connection: connection)
        let shoppers = model.touchedShoppers.sorted().compactMap { model.shoppers[$0] }
        if !shoppers.isEmpty {
            func welcome(_ shopper: ShopperState) -> (state: String?, code: String?, causation: String?) {
                switch shopper.welcome {
                case .held(let code, let causation): ("held", code, causation)
                case .sent: ("sent", nil, nil)
                case .declined: ("declined", nil, nil)
                case nil: (nil, nil, nil)
                }
            }
            let state: [PostgresColumn<ShopperState>] = [
                .init("email", "text", \.email),
                .init("contact_id", "bigint") { shopper in shopper.email.flatMap { model.contacts[.init(storeID: shopper.storeID, email: $0)]?.contactID } },
                .init("first_name", "text", \.firstName), .init("last_name", "text", \.lastName), .init("phone", "text", \.phone),
                .init("traits", "jsonb") { $0.traits.isEmpty ? nil : JSONValue.object($0.traits) }, .init("confirm_token", "text", \.confirmToken),
                .init("welcome_state", "text") { welcome($0).state }, .init("welcome_offer_code", "text") { welcome($0).code },
                .init("welcome_causation_id", "text") { welcome($0).causation }, .init("browse_recommended_at", "timestamptz", \.browseRecommendedAt),
            ]
            try connection.execute(
                .insert(
                    into: "capture_shoppers", as: "s", shoppers, [.init("store_id", "text", \.storeID), .init("shopper_id", "bigint", \.shopperID)] + state,
                    then: .onConflict(["store_id", "shopper_id"], update: state, also: "updated_at = now()")))
        }
        try ContactDecisionLog.record(model.decisions + model.recommendations, connection: connection)
        for erasure in model.erasures {
            if erasure.keepHash, let erasedAddresses, let email = erasure.email {
                try erasedAddresses.record(ErasedAddresses.Key(storeID: erasure.storeID, email: email), connection: connection)
            }
            let store = erasure.storeID
            try connection.execute(
                """
                SELECT rapport_erase_contact(\(store), \(erasure.contactID),
                    ARRAY(SELECT \(store)::text || '/' || value FROM rapport_identities WHERE store_id = \(store) AND shopper_id = \(erasure.shopperID))
                    || CASE WHEN \(erasure.email)::text IS NULL THEN ARRAY[]::text[] ELSE ARRAY[\(store)::text || '/' || \(erasure.email)::text] END)
                """)
        }
    }
}
