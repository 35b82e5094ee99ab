import Foundation
import Testing

@testable import Shared

@Suite struct JSONValueTests {
    private func parse(_ text: String) throws(JSONValue.SyntaxError) -> JSONValue {
        try JSONValue.parse(ArraySlice(Array(text.utf8)))
    }

    @Test func parsesEveryKindOfValue() throws {
        let value = try parse(#" {"a":[1,-2.5,3e2,true,false,null],"b":{"c":"d\"\\\/\n\t\u00e9\ud83c\udf89"},"e":""} "#)
        #expect(value["a"] == .array([.number(1), .number(-2.5), .number(300), .bool(true), .bool(false), .null]))
        #expect(value["b"]?["c"] == .string("d\"\\/\n\té🎉"))
        #expect(value["e"] == .string(""))
    }

    @Test(arguments: [
        "", "{", "{\"a\"}", "{\"a\":}", "[1,]", "[1 2]", "01", "1.", "-", "tru", "\"unterminated", "{\"a\":1} x",
        "\"\u{01}\"", "\"\\x\"", "\"\\ud83c\"", "\"\\uZZZZ\"", String(repeating: "[", count: 100) + String(repeating: "]", count: 100),
    ])
    func refusesWhatIsNotJSON(text: String) {
        #expect(throws: JSONValue.SyntaxError.self) { try parse(text) }
    }

    @Test func encodesCompactlyWithSortedKeysAndRoundTrips() throws {
        let value = JSONValue.object([
            "z": .number(3), "a": .string("quote \" slash \\ newline \n bell \u{07} é"), "m": .array([.number(1.5), .null, .bool(true)]),
        ])
        let bytes = value.encoded()
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"a":"quote \" slash \\ newline \n bell \u0007 é","m":[1.5,null,true],"z":3}"#)
        #expect(try JSONValue.parse(ArraySlice(bytes)) == value)
        // Foundation reads what it writes.
        #expect((try? JSONSerialization.jsonObject(with: Data(bytes))) != nil)
    }
}
