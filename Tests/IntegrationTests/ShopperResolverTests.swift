import Foundation
import Shared
import Testing

/// One shopper across workers, against real PostgreSQL: the resolver every worker calls in its batch.
@Suite struct ShopperResolverTests {
    static func identities(_ store: String, user: String? = nil, anonymous: String? = nil, email: String? = nil) -> (
        store: String, identities: [ShopperIdentity]
    ) {
        var carried: [ShopperIdentity] = []
        if let user { carried.append(ShopperIdentity(store: store, kind: .userID, value: user)) }
        if let anonymous { carried.append(ShopperIdentity(store: store, kind: .anonymousID, value: anonymous)) }
        if let email { carried.append(ShopperIdentity(store: store, kind: .email, value: email)) }
        return (store, carried)
    }

    @Test func identitiesResolveToOneShopperAnAnonymousOneIsFoldedIntoTheKnownOneAndKnownPeopleStayApart() async throws {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { postgres.close() }
            _ = try await Migrator(client: postgres, logger: TestEnvironment.logger).migrate(try Migration.shared())
            try await postgres.withConnection { connection in
                // A component's part of a merge, found by its name as every worker's is.
                try connection.execute("CREATE TABLE test_moves (store_id text, from_id bigint, into_id bigint)")
                try connection.execute(
                    """
                    CREATE FUNCTION test_merge_shopper(p_store text, p_from bigint, p_into bigint) RETURNS void LANGUAGE sql AS $$
                        INSERT INTO test_moves VALUES (p_store, p_from, p_into);
                    $$
                    """)
            }
            let s = "store-1"
            // Batch 1, as CaptureWorker sees it: a capture (anonymous id and address), a browser elsewhere, another store.
            let first = try await postgres.withTransaction { connection in
                try ShopperResolver.resolve(
                    [
                        Self.identities(s, anonymous: "a-phone", email: "bo@example.com"), Self.identities(s, anonymous: "a-laptop"),
                        Self.identities("store-2", anonymous: "a-phone"), Self.identities(s, anonymous: "a-phone"),
                    ],
                    connection: connection)
            }
            let (bo, laptop, otherStore) = (first.shoppers[0], first.shoppers[1], first.shoppers[2])
            #expect(first.shoppers[3] == bo, "the same anonymous id within the batch is the same shopper")
            #expect(Set([bo, laptop, otherStore]).count == 3, "another device, another store: other shoppers")
            #expect(first.created.isSuperset(of: [laptop, otherStore]))

            // Batch 2, as ReceiptWorker sees it: the logged-in order from the laptop with the same address links all three
            // identities to Bo, folding the anonymous laptop shopper in; Ann, a known person on the laptop's anonymous id
            // afterwards, is not merged with Bo.
            let second = try await postgres.withTransaction { connection in
                try ShopperResolver.resolve(
                    [
                        Self.identities(s, user: "u-bo", anonymous: "a-laptop", email: "bo@example.com"), Self.identities(s, user: "u-bo"),
                        Self.identities(s, user: "u-ann", email: "ann@example.com"),
                    ],
                    connection: connection)
            }
            #expect(second.shoppers[0] == bo && second.shoppers[1] == bo)
            #expect(second.shoppers[2] != bo)
            #expect(second.created == [second.shoppers[2]])
            let rows = try await postgres.withConnection { connection in
                try connection.query("SELECT kind, value, shopper_id FROM rapport_identities WHERE store_id = $1 ORDER BY kind, value", [s])
                    .map {
                        "\(try $0.decode(String.self, at: 0) ?? "") \(try $0.decode(String.self, at: 1) ?? "") \(try $0.decode(Int64.self, at: 2) == bo ? "bo" : "other")"
                    }
            }
            #expect(
                rows == [
                    "anonymous_id a-laptop bo", "anonymous_id a-phone bo", "email ann@example.com other", "email bo@example.com bo", "user_id u-ann other",
                    "user_id u-bo bo",
                ])
            let moves = try await postgres.withConnection { connection in
                try connection.query("SELECT from_id, into_id FROM test_moves").map {
                    [try $0.decode(Int64.self, at: 0) ?? 0, try $0.decode(Int64.self, at: 1) ?? 0]
                }
            }
            #expect(moves == [[laptop, bo]], "each component moved the folded shopper's rows once")
            let left = try await postgres.withConnection { connection in
                try connection.query("SELECT 1 FROM rapport_shoppers WHERE store_id = $1 AND shopper_id = $2", [s, laptop]).count
            }
            #expect(left == 0, "the folded shopper is gone")

            // Nothing known: a lookup creates nothing.
            let unknown = ShopperIdentity(store: s, kind: .email, value: "nobody@example.com")
            let found = try await postgres.withConnection { try ShopperResolver.linkedShoppers([unknown], connection: $0) }
            #expect(found.isEmpty)
        }
    }
}
