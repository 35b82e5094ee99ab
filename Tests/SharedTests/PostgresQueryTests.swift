import Foundation
import Testing

@testable import Shared

@Suite struct PostgresQueryTests {
    @Test func interpolatedValuesBecomeNumberedParametersNeverText() {
        let store = "s'; DROP TABLE rapport_shoppers; --"
        let id: Int64 = 7
        let missing: String? = nil
        let query: PostgresQuery =
            "SELECT email FROM capture_shoppers WHERE store_id = \(store) AND shopper_id = \(id) AND phone IS NOT DISTINCT FROM \(missing)"
        #expect(query.sql == "SELECT email FROM capture_shoppers WHERE store_id = $1 AND shopper_id = $2 AND phone IS NOT DISTINCT FROM $3")
        #expect(query.binds.count == 3)
        #expect(query.binds[0]?.postgresText == store)
        #expect(query.binds[1]?.postgresText == "7")
        #expect(query.binds[2] == nil)
    }

    @Test func constantFragmentsAreTextAndNestedQueriesAreRenumbered() {
        let filter: PostgresQuery = "kind = \("product") AND note <> '$1' AND \"$2col\" > \(3)"
        let query: PostgresQuery = "SELECT \(sql: "item, views") FROM capture_interests WHERE store_id = \("s") AND \(filter) LIMIT \(10)"
        #expect(query.sql == "SELECT item, views FROM capture_interests WHERE store_id = $1 AND kind = $2 AND note <> '$1' AND \"$2col\" > $3 LIMIT $4")
        #expect(query.binds.map { $0?.postgresText } == ["s", "product", "3", "10"])
        let plain: PostgresQuery = "SELECT 1"
        #expect(plain.sql == "SELECT 1" && plain.binds.isEmpty)
    }

    @Test func aSetBasedInsertNamesEachColumnOnce() {
        struct Visit { var store: String, shopper: Int64, item: String? }
        let columns: [PostgresColumn<Visit>] = [.init("store_id", "text", \.store), .init("shopper_id", "bigint", \.shopper), .init("item", "text", \.item)]
        let visits = [Visit(store: "s", shopper: 1, item: nil), Visit(store: "s", shopper: 2, item: "tea")]
        let query = PostgresQuery.insert(
            into: "visits", as: "v", visits, columns, then: "ON CONFLICT (store_id, shopper_id) DO UPDATE SET item = \("x") RETURNING shopper_id")
        #expect(
            query.sql
                == "INSERT INTO visits AS v (store_id, shopper_id, item) SELECT store_id, shopper_id, item FROM unnest($1::text[], $2::bigint[], $3::text[]) "
                + "AS u(store_id, shopper_id, item) ON CONFLICT (store_id, shopper_id) DO UPDATE SET item = $4 RETURNING shopper_id")
        #expect(query.binds.map { $0?.postgresText } == [#"{"s","s"}"#, "{1,2}", #"{NULL,"tea"}"#, "x"])
        let upsert = PostgresQuery.onConflict(["store_id", "shopper_id"], update: Array(columns.dropFirst(2)), also: "updated_at = now()")
        #expect(upsert.sql == "ON CONFLICT (store_id, shopper_id) DO UPDATE SET item = EXCLUDED.item, updated_at = now()")
        #expect(PostgresQuery.assignments(columns, from: "u").sql == "store_id = u.store_id, shopper_id = u.shopper_id, item = u.item")
    }

    @Test func optionalArraysNeedNoCast() {
        let values: [String?] = ["a", nil, "b\"c"]
        #expect(PostgresArray(values).postgresText == #"{"a",NULL,"b\"c"}"#)
    }

    @Test func rowsDecodeIntoTuplesAndRefuseANullWhereTheTypeHasNone() throws {
        let row = PostgresRow(columns: ["shopper_id", "email", "seen_at", "traits"], values: ["42", nil, "2026-11-25 05:54:55+00", #"{"vip":true}"#])
        let (id, email, seen, traits) = try row.decode((Int64, String?, Date, JSONValue).self)
        #expect(id == 42 && email == nil && seen.timeIntervalSince1970 == 1_795_586_095)
        #expect(traits == .object(["vip": .bool(true)]))
        #expect(throws: PostgresError.self) { try row.decode((Int64, String, Date, JSONValue).self) }  // email is NULL
        #expect(throws: PostgresError.self) { try row.decode((Int64, String?).self) }  // four columns, not two
        let single = PostgresRows(columns: ["id"], values: [["3"], ["1"]])
        #expect(try single.decode(Int64.self) == [3, 1])
        #expect(throws: PostgresError.self) { try row.decode(Int64.self) }  // four columns, not one
        #expect(try row.decode("shopper_id", as: Int64.self) == 42)
        #expect(try row.decode("email", as: String?.self) == nil)
        #expect(throws: PostgresError.self) { try row.decode("missing", as: String?.self) }
        #expect(throws: PostgresError.self) { try row.decode("traits", as: Int.self) }
    }
}
