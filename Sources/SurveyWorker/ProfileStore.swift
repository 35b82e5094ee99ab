import Foundation
import InboundEvents
import Shared

/// The survey profiles (`survey_profiles`), derived from the stored responses.
enum ProfileStore {
    /// Derives the profile of each of `shoppers` again from all their responses, oldest first (so that an older
    /// survey arriving late overrides nothing newer), stores it, and returns it by shopper.
    /// - Throws: ``PostgresError``.
    static func derive(_ shoppers: [(store: String, shopperID: Int64)], connection: PostgresConnection) throws -> [Int64: Profile] {
        guard !shoppers.isEmpty else { return [:] }
        var responses: [Int64: (store: String, answers: [Profile.Answers], first: Date, last: Date)] = [:]
        for (store, shopper, stored, at) in try connection.query(
            """
            SELECT u.store_id, u.shopper_id, r.answers, r.submitted_at
            FROM unnest(\(PostgresArray(shoppers.map(\.store)))::text[], \(PostgresArray(shoppers.map(\.shopperID)))::bigint[]) AS u(store_id, shopper_id)
            CROSS JOIN LATERAL (
                SELECT r.answers, r.submitted_at, r.message_id FROM survey_responses r
                WHERE r.store_id = u.store_id AND r.shopper_id = u.shopper_id OFFSET 0) r
            ORDER BY u.shopper_id, r.submitted_at, r.message_id
            """
        ).decode((String, Int64, JSONValue, Date).self) {
            guard let object = stored.objectValue, let answers = try? Profile.Answers(object) else { continue }
            var entry = responses[shopper] ?? (store, [], at, at)
            entry.answers.append(answers)
            entry.last = at
            responses[shopper] = entry
        }
        let profiles = responses.mapValues { Profile($0.answers) }
        let rows = responses.sorted { $0.key < $1.key }
        func list(_ strings: [String]?) -> JSONValue? { strings.map { .array($0.map(JSONValue.string)) } }
        try connection.execute(
            """
            INSERT INTO survey_profiles AS p (store_id, shopper_id, interests, habits, income_band, channels, other, responses, first_at, last_at)
            SELECT u.store_id, u.shopper_id,
                   CASE WHEN u.interests IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(u.interests)) END,
                   u.habits, u.income_band,
                   CASE WHEN u.channels IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(u.channels)) END,
                   u.other, u.responses, u.first_at, u.last_at
            FROM unnest(
                \(PostgresArray(rows.map(\.value.store)))::text[], \(PostgresArray(rows.map(\.key)))::bigint[],
                \(PostgresArray(rows.map { list(profiles[$0.key]?.interests) }))::jsonb[],
                \(PostgresArray(rows.map { JSONValue.object((profiles[$0.key]?.habits ?? [:]).mapValues(JSONValue.string)) }))::jsonb[],
                \(PostgresArray(rows.map { profiles[$0.key]?.incomeBand }))::text[], \(PostgresArray(rows.map { list(profiles[$0.key]?.channels) }))::jsonb[],
                \(PostgresArray(rows.map { JSONValue.object(profiles[$0.key]?.other ?? [:]) }))::jsonb[], \(PostgresArray(rows.map(\.value.answers.count)))::int[],
                \(PostgresArray(rows.map(\.value.first)))::timestamptz[], \(PostgresArray(rows.map(\.value.last)))::timestamptz[])
                 AS u(store_id, shopper_id, interests, habits, income_band, channels, other, responses, first_at, last_at)
            ON CONFLICT (store_id, shopper_id) DO UPDATE
            SET interests = EXCLUDED.interests, habits = EXCLUDED.habits, income_band = EXCLUDED.income_band, channels = EXCLUDED.channels,
                other = EXCLUDED.other, responses = EXCLUDED.responses, first_at = EXCLUDED.first_at, last_at = EXCLUDED.last_at, updated_at = now()
            """)
        return profiles
    }
}
