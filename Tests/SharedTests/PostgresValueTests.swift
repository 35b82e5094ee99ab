import Foundation
import Testing

@testable import Shared

@Suite struct PostgresValueTests {
    @Test func byteaHexRoundTrip() {
        let bytes = PostgresBytes([0x00, 0x01, 0x7F, 0x80, 0xFF])
        #expect(bytes.postgresText == "\\x00017f80ff")
        #expect(PostgresBytes(postgresText: "\\x00017F80ff") == bytes)
        #expect(PostgresBytes(postgresText: "\\x0") == nil)
        #expect(PostgresBytes(postgresText: "00") == nil)
    }

    @Test func timestampsParseInTheISOStyleTheConnectionSets() throws {
        let date = try #require(Date(postgresText: "2026-11-25 05:54:55.25+00"))
        #expect(date.timeIntervalSince1970 == 1_795_586_095.25)
        #expect(Date(postgresText: "2026-11-25 05:54:55+00")?.timeIntervalSince1970 == 1_795_586_095)
        #expect(Date(postgresText: "yesterday") == nil)
    }

    @Test func scalars() {
        #expect(Bool(postgresText: "t") == true)
        #expect(Bool(postgresText: "f") == false)
        #expect(Bool(postgresText: "x") == nil)
        #expect(Int(postgresText: "-42") == -42)
        #expect(Double(postgresText: "1.5") == 1.5)
        #expect(PostgresConnection.quoteIdentifier("we\"ird") == "\"we\"\"ird\"")
    }
}
