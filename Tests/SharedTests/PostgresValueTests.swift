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
        #expect(Int.min.postgresText == "-9223372036854775808")
        #expect(Int64.max.postgresText == "9223372036854775807")
        #expect(Int32(0).postgresText == "0")
        #expect(Int32(-7).postgresText == "-7")
        #expect(PostgresConnection.quoteIdentifier("we\"ird") == "\"we\"\"ird\"")
    }

    @Test func timestampsAreWrittenInUTCToTheMicrosecond() {
        #expect(Date(timeIntervalSince1970: 1_795_586_095.25).postgresText == "2026-11-25T05:54:55.250000Z")
        #expect(Date(timeIntervalSince1970: 0).postgresText == "1970-01-01T00:00:00.000000Z")
        #expect(Date(timeIntervalSince1970: -1.5).postgresText == "1969-12-31T23:59:58.500000Z")
        // 2024-02-29 (a leap day) and the last microsecond of 2099.
        #expect(Date(timeIntervalSince1970: 1_709_164_800).postgresText == "2024-02-29T00:00:00.000000Z")
        #expect(Date(timeIntervalSince1970: 4_102_444_799.999999).postgresText == "2099-12-31T23:59:59.999999Z")
    }

    @Test func arraysQuoteAndEscapeOnlyWhatNeedsIt() {
        #expect(PostgresArray(["a", "b\"c", "d\\e", ""]).postgresText == #"{"a","b\"c","d\\e",""}"#)
        #expect(PostgresArray([1, -2, 30] as [Int64]).postgresText == "{1,-2,30}")
        #expect(PostgresArray(["x", nil] as [(any PostgresBindable)?]).postgresText == #"{"x",NULL}"#)
        #expect(PostgresArray([PostgresBytes([0xAB, 0x01])]).postgresText == #"{"\\xab01"}"#)
        #expect(PostgresArray([PostgresBytes([0xAB]), PostgresBytes([]), PostgresBytes([0x00, 0xFF])]).postgresText == #"{"\\xab","\\x","\\x00ff"}"#)
        #expect(PostgresArray([Date(timeIntervalSince1970: 0)]).postgresText == "{1970-01-01T00:00:00.000000Z}")
        #expect(PostgresArray([String]()).postgresText == "{}")
    }
}
