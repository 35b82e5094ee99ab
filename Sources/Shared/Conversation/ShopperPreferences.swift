import Foundation

/// What a shopper told the store they care about (`rapport_shopper_preferences`), for every worker to act on:
/// SurveyWorker writes it from the survey profile; the next sale leans towards the interests, the walk-with-me
/// invites to the chosen channels only.
public struct ShopperPreferences: Sendable, Equatable {
    /// Categories they said they are interested in.
    public var interests: [String]
    /// The channels they chose (`instagram`, `events`, `webinars`, `loyalty`, …); `nil` when they have not said.
    public var channels: [String]?

    public init(interests: [String] = [], channels: [String]? = nil) {
        self.interests = interests
        self.channels = channels
    }

    /// The preferences of each of `shoppers` that stated any, by shopper id (ids are unique across stores).
    /// - Throws: ``PostgresError``.
    public static func load(_ shoppers: [(store: String, shopperID: Int64)], connection: PostgresConnection) throws -> [Int64: ShopperPreferences] {
        guard !shoppers.isEmpty else { return [:] }
        var result: [Int64: ShopperPreferences] = [:]
        for (shopper, interests, channels) in try connection.query(
            """
            SELECT p.shopper_id, to_json(p.interests), to_json(p.channels)
            FROM unnest(\(PostgresArray(shoppers.map(\.store)))::text[], \(PostgresArray(shoppers.map(\.shopperID)))::bigint[]) AS u(store_id, shopper_id)
            JOIN LATERAL (SELECT * FROM rapport_shopper_preferences p WHERE p.store_id = u.store_id AND p.shopper_id = u.shopper_id OFFSET 0) p ON true
            """
        ).decode((Int64, JSONValue?, JSONValue?).self) {
            result[shopper] = ShopperPreferences(interests: Self.strings(interests) ?? [], channels: Self.strings(channels))
        }
        return result
    }

    /// A `text[]` column read as JSON (`to_json(column)`); `nil` for NULL.
    static func strings(_ json: JSONValue?) -> [String]? {
        json?.arrayValue?.compactMap(\.stringValue)
    }

    /// Stores each shopper's preferences, replacing what was there.
    /// - Throws: ``PostgresError``.
    public static func store(_ preferences: [(store: String, shopperID: Int64, preferences: ShopperPreferences)], connection: PostgresConnection) throws {
        guard !preferences.isEmpty else { return }
        // Arrays of arrays do not travel as one parameter: each list goes as its JSON text.
        func json(_ list: [String]?) -> JSONValue? { list.map { JSONValue.array($0.map(JSONValue.string)) } }
        try connection.execute(
            """
            INSERT INTO rapport_shopper_preferences AS p (store_id, shopper_id, interests, channels)
            SELECT u.store_id, u.shopper_id, ARRAY(SELECT jsonb_array_elements_text(u.interests)),
                   CASE WHEN u.channels IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(u.channels)) END
            FROM \(.unnest(preferences, [
                .init("store_id", "text", \.store), .init("shopper_id", "bigint", \.shopperID), .init("interests", "jsonb") { json($0.preferences.interests) },
                .init("channels", "jsonb") { json($0.preferences.channels) },
            ]))
            ON CONFLICT (store_id, shopper_id) DO UPDATE SET interests = EXCLUDED.interests, channels = EXCLUDED.channels, updated_at = now()
            """)
    }
}

extension StoreSettings {
    /// The channels a walk-with-me invites to (`kind`, `name`, `url`): the store's social profiles, events and loyalty
    /// programme — all of them when the shopper has not said (`chosen` nil), else those they chose: `social` (every
    /// profile) or a network by name (`instagram` matches a profile named or hosted so), `events` (every event),
    /// `webinars` (events that say so), `loyalty`.
    public func walkWithMeChannels(chosen: [String]?) -> [JSONValue] {
        func channel(_ kind: String, _ link: Link) -> JSONValue {
            .object(["kind": .string(kind), "name": .string(link.name), "url": .string(link.url)])
        }
        func mentions(_ link: Link, _ word: String) -> Bool { link.name.lowercased().contains(word) || link.url.lowercased().contains(word) }
        guard let chosen else {
            return socialLinks.map { channel("social", $0) } + eventLinks.map { channel("events", $0) }
                + (loyaltyProgramme.map { [channel("loyalty", $0)] } ?? [])
        }
        let wanted = Set(chosen.map { $0.lowercased() })
        let social = socialLinks.filter { link in
            wanted.contains("social") || wanted.contains { !["events", "webinars", "loyalty"].contains($0) && mentions(link, $0) }
        }
        let events = eventLinks.filter { wanted.contains("events") || (wanted.contains("webinars") && mentions($0, "webinar")) }
        let loyalty = wanted.contains("loyalty") ? loyaltyProgramme.map { [channel("loyalty", $0)] } ?? [] : []
        return social.map { channel("social", $0) } + events.map { channel("events", $0) } + loyalty
    }
}
