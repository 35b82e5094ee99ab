import Foundation
import Testing

@testable import Shared

@Suite struct SegmentMessageTests {
    private func decode(_ text: String, sizeLimit: Int = 1 << 20) throws(DecodeFailure) -> DecodedMessage {
        try SegmentMessage.decode(ArraySlice(Array(text.utf8)), sizeLimit: sizeLimit)
    }

    private func reason(_ text: String) -> DecodeFailure.Reason? {
        do {
            _ = try decode(text)
            return nil
        } catch {
            return error.reason
        }
    }

    @Test func readsATrackMessage() throws {
        let decoded = try decode(
            #"{"type":"track","event":"Email Captured","messageId":"m-1","timestamp":"2026-11-25T05:54:55.250+01:00","anonymousId":"a-1","context":{"storeId":"shop-9","traits":{"email":"Ada@Example.com"}},"properties":{"source":"popup","consent":{"marketing":true}}}"#
        )
        guard case .event(let message) = decoded else {
            Issue.record("not an event: \(decoded)")
            return
        }
        #expect(message.kind == .track)
        #expect(message.event == "Email Captured")
        #expect(message.storeID == "shop-9")
        #expect(message.timestamp.timeIntervalSince1970 == 1_795_582_495.25)
        #expect(message.properties["consent"]?["marketing"] == .bool(true))
        #expect(message.email == "Ada@Example.com")
        #expect(message.shopperKey == "shop-9/a-1")
    }

    @Test func anIdentifyWithOnlyAnEmailIsEnoughAndTheStoreDefaults() throws {
        guard
            case .event(let message) = try decode(
                #"{"type":"identify","messageId":"m-2","timestamp":"2026-11-25T05:54:55Z","traits":{"email":"Ada@Example.com"}}"#)
        else {
            Issue.record("not an event")
            return
        }
        #expect(message.storeID == "default")
        #expect(message.shopperKey == "default/ada@example.com")
        #expect(try decode(#"{"type":"identify","messageId":"m","timestamp":"2026-11-25T05:54:55Z","userId":"u","anonymousId":"a"}"#) != .skipped(type: ""))
    }

    @Test func otherSegmentTypesAreSkippedNotDeadLettered() throws {
        #expect(try decode(#"{"type":"page","messageId":"m","timestamp":"x"}"#) == .skipped(type: "page"))
    }

    @Test(arguments: [
        (#"{"type":"track""#, DecodeFailure.Reason.malformedJSON),
        ("not json at all", .malformedJSON),
        ("[1,2]", .schemaViolation),
        (#"{"messageId":"m","timestamp":"2026-11-25T05:54:55Z","userId":"u","event":"E"}"#, .schemaViolation),
        (#"{"type":"merge","messageId":"m","timestamp":"2026-11-25T05:54:55Z","userId":"u"}"#, .schemaViolation),
        (#"{"type":"track","messageId":7,"timestamp":"2026-11-25T05:54:55Z","userId":"u","event":"E"}"#, .schemaViolation),
        (#"{"type":"track","messageId":"","timestamp":"2026-11-25T05:54:55Z","userId":"u","event":"E"}"#, .schemaViolation),
        (#"{"type":"track","messageId":"m","timestamp":"yesterday","userId":"u","event":"E"}"#, .schemaViolation),
        (#"{"type":"track","messageId":"m","timestamp":"2026-11-25T05:54:55Z","event":"E"}"#, .schemaViolation),
        (#"{"type":"track","messageId":"m","timestamp":"2026-11-25T05:54:55Z","userId":"u"}"#, .schemaViolation),
        (#"{"type":"track","messageId":"m","timestamp":"2026-11-25T05:54:55Z","userId":"u","event":"E","properties":[1]}"#, .schemaViolation),
        (#"{"type":"track","messageId":"m","timestamp":"2026-11-25T05:54:55Z","userId":"u","event":"E","context":{"storeId":3}}"#, .schemaViolation),
        (#"{"type":"identify","messageId":"m","timestamp":"2026-11-25T05:54:55Z","traits":{"email":5}}"#, .schemaViolation),
    ])
    func badMessagesCarryTheContractsReason(text: String, expected: DecodeFailure.Reason) {
        #expect(reason(text) == expected)
    }

    @Test func invalidUTF8AndOversizedMessagesAreRefusedUnparsed() {
        #expect(throws: DecodeFailure(.invalidUTF8, "message is not valid UTF-8")) {
            try SegmentMessage.decode(ArraySlice([0x7B, 0xFF, 0xFE, 0x7D]))
        }
        let big = "{\"type\":\"track\"," + String(repeating: " ", count: 2000) + "}"
        #expect(throws: DecodeFailure(.tooLarge, "message of 2017 bytes exceeds the 1024-byte limit")) {
            try decode(big, sizeLimit: 1024)
        }
    }
}

@Suite struct TimestampTests {
    @Test(arguments: [
        ("2026-11-25T05:54:55Z", 1_795_586_095.0),
        ("2026-11-25T05:54:55.250Z", 1_795_586_095.25),
        ("2026-11-25t06:54:55+01:00", 1_795_586_095.0),
        ("2026-11-24T21:54:55-08:00", 1_795_586_095.0),
        ("2024-02-29T00:00:00Z", 1_709_164_800.0),
        ("1970-01-01T00:00:00Z", 0.0),
    ])
    func parsesRFC3339(text: String, expected: Double) throws {
        let date = try #require(Date(rfc3339: text))
        #expect(abs(date.timeIntervalSince1970 - expected) < 0.000_001)
    }

    @Test(arguments: [
        "2026-11-25", "2026-11-25T05:54:55", "2026-13-25T05:54:55Z", "2026-11-25T25:00:00Z", "2026-11-25T05:54:55.Z", "2026-11-25T05:54:55+0100", "yesterday",
        "2026-11-25T05:54:55Zx",
    ])
    func refusesWhatIsNotRFC3339(text: String) {
        #expect(Date(rfc3339: text) == nil)
    }
}
