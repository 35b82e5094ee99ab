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
            SELECT s.shopper_id, s.store_id, s.email, s.first_name, s.last_name, s.phone, s.traits::text, s.confirm_token,
                   s.welcome_state, s.welcome_offer_code, s.welcome_causation_id, s.browse_recommended_at, s.erased_at IS NOT NULL,
                   (SELECT value FROM rapport_identities i WHERE i.store_id = s.store_id AND i.shopper_id = s.shopper_id AND i.kind = 'user_id' LIMIT 1),
                   (SELECT value FROM rapport_identities i WHERE i.store_id = s.store_id AND i.shopper_id = s.shopper_id AND i.kind = 'anonymous_id' LIMIT 1),
                   (SELECT coalesce(json_agg(item ORDER BY last_at DESC), '[]')::text FROM (
                        SELECT item, last_at FROM capture_interests i
                        WHERE i.store_id = s.store_id AND i.shopper_id = s.shopper_id AND i.kind = 'product'
                        ORDER BY last_at DESC LIMIT 10) recent)
            FROM unnest($1::text[], $2::bigint[]) AS u(store_id, shopper_id)
            CROSS JOIN LATERAL (SELECT * FROM capture_shoppers s WHERE s.store_id = u.store_id AND s.shopper_id = u.shopper_id OFFSET 0) s
            """, [PostgresArray(ids.map(\.value)), PostgresArray(ids.map(\.key))])
        {
            guard let id = try row.decode(Int64.self, at: 0), let store = try row.decode(String.self, at: 1) else { continue }
            var shopper = ShopperState(shopperID: id, storeID: store)
            shopper.email = try row.decode(String.self, at: 2)
            shopper.firstName = try row.decode(String.self, at: 3)
            shopper.lastName = try row.decode(String.self, at: 4)
            shopper.phone = try row.decode(String.self, at: 5)
            if let traits = try row.decode(String.self, at: 6) { shopper.traits = (try? JSONValue.parse(Array(traits.utf8)[...]))?.objectValue ?? [:] }
            shopper.confirmToken = try row.decode(String.self, at: 7)
            switch try row.decode(String.self, at: 8) {
            case "held":
                shopper.welcome = .held(offerCode: try row.decode(String.self, at: 9) ?? "", causationID: try row.decode(String.self, at: 10) ?? "")
            case "sent": shopper.welcome = .sent
            case "declined": shopper.welcome = .declined
            default: shopper.welcome = nil
            }
            shopper.browseRecommendedAt = try row.decode(Date.self, at: 11)
            shopper.erased = try row.decode(Bool.self, at: 12) ?? false
            shopper.userID = try row.decode(String.self, at: 13)
            shopper.anonymousID = try row.decode(String.self, at: 14)
            if let recent = try row.decode(String.self, at: 15) {
                shopper.recentProducts = (try? JSONValue.parse(Array(recent.utf8)[...]))?.arrayValue?.compactMap(\.stringValue) ?? []
            }
            shoppers[id] = shopper
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
            let ledger = model.ledger
            try connection.execute(
                """
                INSERT INTO capture_consent_ledger (store_id, shopper_id, message_id, kind, marketing, source, opt_in_level, consent_text,
                                                    text_version, ip, user_agent, occurred_at)
                SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::text[], $8::text[],
                                     $9::text[], $10::text[], $11::text[], $12::timestamptz[])
                """,
                [
                    PostgresArray(ledger.map(\.storeID)), PostgresArray(ledger.map(\.shopperID)), PostgresArray(ledger.map(\.messageID)),
                    PostgresArray(ledger.map(\.kind)), PostgresArray(ledger.map(\.marketing) as [(any PostgresBindable)?]),
                    PostgresArray(ledger.map(\.source) as [(any PostgresBindable)?]), PostgresArray(ledger.map(\.optInLevel) as [(any PostgresBindable)?]),
                    PostgresArray(ledger.map(\.consentText) as [(any PostgresBindable)?]),
                    PostgresArray(ledger.map(\.textVersion) as [(any PostgresBindable)?]), PostgresArray(ledger.map(\.ip) as [(any PostgresBindable)?]),
                    PostgresArray(ledger.map(\.userAgent) as [(any PostgresBindable)?]), PostgresArray(ledger.map(\.occurredAt)),
                ])
        }
        if !model.timeline.isEmpty {
            let timeline = model.timeline
            try connection.execute(
                """
                INSERT INTO capture_timeline (store_id, shopper_id, message_id, event, occurred_at)
                SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
                """,
                [
                    PostgresArray(timeline.map(\.storeID)), PostgresArray(timeline.map(\.shopperID)), PostgresArray(timeline.map(\.messageID)),
                    PostgresArray(timeline.map(\.event)), PostgresArray(timeline.map(\.occurredAt)),
                ])
        }
        if !model.interests.isEmpty {
            let interests = model.interests.sorted { ($0.key.storeID, $0.key.shopperID, $0.key.kind, $0.key.item) < ($1.key.storeID, $1.key.shopperID, $1.key.kind, $1.key.item) }
            try connection.execute(
                """
                INSERT INTO capture_interests AS i (store_id, shopper_id, kind, item, views, adds, last_at)
                SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::integer[], $6::integer[], $7::timestamptz[])
                ON CONFLICT (store_id, shopper_id, kind, item) DO UPDATE
                SET views = i.views + EXCLUDED.views, adds = i.adds + EXCLUDED.adds, last_at = greatest(i.last_at, EXCLUDED.last_at)
                """,
                [
                    PostgresArray(interests.map(\.key.storeID)), PostgresArray(interests.map(\.key.shopperID)), PostgresArray(interests.map(\.key.kind)),
                    PostgresArray(interests.map(\.key.item)), PostgresArray(interests.map(\.value.views)), PostgresArray(interests.map(\.value.adds)),
                    PostgresArray(interests.map(\.value.lastAt)),
                ])
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
            try connection.execute(
                """
                INSERT INTO capture_shoppers AS s (store_id, shopper_id, email, contact_id, first_name, last_name, phone, traits, confirm_token,
                                                   welcome_state, welcome_offer_code, welcome_causation_id, browse_recommended_at)
                SELECT u.store_id, u.shopper_id, u.email, u.contact_id, u.first_name, u.last_name, u.phone, u.traits::jsonb, u.confirm_token,
                       u.welcome_state, u.welcome_offer_code, u.welcome_causation_id, u.browse_recommended_at
                FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                            $10::text[], $11::text[], $12::timestamptz[], $13::bigint[])
                     AS u(store_id, shopper_id, email, first_name, last_name, phone, traits, confirm_token, welcome_state, welcome_offer_code,
                          welcome_causation_id, browse_recommended_at, contact_id)
                ON CONFLICT (store_id, shopper_id) DO UPDATE
                SET email = EXCLUDED.email, contact_id = EXCLUDED.contact_id, first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
                    phone = EXCLUDED.phone, traits = EXCLUDED.traits, confirm_token = EXCLUDED.confirm_token,
                    welcome_state = EXCLUDED.welcome_state, welcome_offer_code = EXCLUDED.welcome_offer_code,
                    welcome_causation_id = EXCLUDED.welcome_causation_id, browse_recommended_at = EXCLUDED.browse_recommended_at,
                    updated_at = now()
                """,
                [
                    PostgresArray(shoppers.map(\.storeID)), PostgresArray(shoppers.map(\.shopperID)),
                    PostgresArray(shoppers.map(\.email) as [(any PostgresBindable)?]), PostgresArray(shoppers.map(\.firstName) as [(any PostgresBindable)?]),
                    PostgresArray(shoppers.map(\.lastName) as [(any PostgresBindable)?]), PostgresArray(shoppers.map(\.phone) as [(any PostgresBindable)?]),
                    PostgresArray(shoppers.map { $0.traits.isEmpty ? nil : String(decoding: JSONValue.object($0.traits).encoded(), as: UTF8.self) } as [(any PostgresBindable)?]),
                    PostgresArray(shoppers.map(\.confirmToken) as [(any PostgresBindable)?]),
                    PostgresArray(shoppers.map { welcome($0).state } as [(any PostgresBindable)?]),
                    PostgresArray(shoppers.map { welcome($0).code } as [(any PostgresBindable)?]),
                    PostgresArray(shoppers.map { welcome($0).causation } as [(any PostgresBindable)?]),
                    PostgresArray(shoppers.map(\.browseRecommendedAt) as [(any PostgresBindable)?]),
                    PostgresArray(shoppers.map { shopper in shopper.email.flatMap { model.contacts[.init(storeID: shopper.storeID, email: $0)]?.contactID } }
                        as [(any PostgresBindable)?]),
                ])
        }
        try ContactDecisionLog.record(model.decisions + model.recommendations, connection: connection)
        for erasure in model.erasures {
            if erasure.keepHash, let erasedAddresses, let email = erasure.email {
                try erasedAddresses.record(ErasedAddresses.Key(storeID: erasure.storeID, email: email), connection: connection)
            }
            try connection.execute(
                """
                SELECT rapport_erase_contact($1, $2,
                    ARRAY(SELECT $1 || '/' || value FROM rapport_identities WHERE store_id = $1 AND shopper_id = $3)
                    || CASE WHEN $4::text IS NULL THEN ARRAY[]::text[] ELSE ARRAY[$1 || '/' || $4] END)
                """, [erasure.storeID, erasure.contactID, erasure.shopperID, erasure.email])
        }
    }
}
