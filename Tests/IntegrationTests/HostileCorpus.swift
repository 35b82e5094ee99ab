import Foundation
import Shared

/// The hostile corpus: messages built to crash, stall, bloat or mislead a worker — non-finite and huge numbers,
/// overflowing totals, NUL and control characters in every id, 10 kB store ids, timestamps in year 0, 9999 and next
/// week, 5,000-product orders, 100,000-element lists, deep nesting, duplicate keys, forged `dlq.*` headers — each with
/// the dead-letter reason the worker must give it. ``HostileInputTests`` sends every one to a running worker, each
/// followed by a good event on the same key.
struct HostileCorpus {
    /// The worker a case is for, by its input topic's events.
    enum Worker: String, CaseIterable, Sendable {
        case capture = "CaptureWorker"
        case receipt = "ReceiptWorker"
        case survey = "SurveyWorker"
    }

    /// One hostile message and what must become of it.
    struct Case: Sendable {
        var name: String
        var value: [UInt8]
        var headers: [KafkaHeader] = []
        /// The `dlq.reason` it must be dead-lettered with.
        var reason: DecodeFailure.Reason
        /// A fragment `dlq.message` must contain, where the rule is worth naming.
        var mentions: String?
    }

    let worker: Worker
    let store: String
    let now: Date

    /// `now` as RFC 3339.
    var timestamp: String { now.rfc3339 }

    /// A valid message of the worker's main event, fields overridden by `replacing` (JSON text per top-level key) and
    /// properties by `properties`.
    func event(id: String, replacing: [String: String] = [:], properties: [String: String] = [:], context: String? = nil) -> [UInt8] {
        var top: [String: String] = [
            "type": #""track""#, "messageId": "\"\(id)\"", "timestamp": "\"\(timestamp)\"", "anonymousId": "\"anon-\(id)\"",
            "context": context ?? #"{"storeId":"\#(store)"}"#,
        ]
        var props: [String: String]
        switch worker {
        case .capture:
            top["event"] = #""Email Captured""#
            props = [
                "email": "\"\(id)@example.com\"", "source": #""popup""#, "offer_code": #""HELLO""#,
                "consent": #"{"marketing":true,"opt_in_level":"single"}"#,
            ]
        case .receipt:
            top["event"] = #""Order Completed""#
            props = [
                "order_id": "\"o-\(id)\"", "currency": #""EUR""#, "email": "\"\(id)@example.com\"",
                "products": #"[{"product_id":"p-1","name":"Tea","price":4.5,"quantity":2}]"#,
            ]
        case .survey:
            top["event"] = #""Survey Submitted""#
            props = ["survey_id": #""s-1""#, "email": "\"\(id)@example.com\"", "answers": #"{"interests":["tea"],"channels":["events"]}"#]
        }
        props.merge(properties) { _, new in new }
        top["properties"] = "{" + props.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        top.merge(replacing) { _, new in new }
        return Array(("{" + top.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}").utf8)
    }

    /// Every case for this worker: those every input topic shares, then the worker's own.
    var cases: [Case] {
        var cases = common
        switch worker {
        case .capture: cases += capture
        case .receipt: cases += receipt
        case .survey: cases += survey
        }
        return cases
    }

    private func text(_ value: String) -> [UInt8] { Array(value.utf8) }

    /// Breakers of the envelope and the parser, the same on every topic.
    private var common: [Case] {
        let big = String(repeating: "s", count: 10_000)
        let tinyValues = "[" + Array(repeating: "[0]", count: 250_000).joined(separator: ",") + "]"
        let longList = "[" + (0..<90_000).map(String.init).joined(separator: ",") + "]"
        return [
            Case(name: "not JSON", value: text("{\"type\":"), reason: .malformedJSON),
            Case(name: "not UTF-8", value: [0x7B, 0xFF, 0xFE, 0x7D], reason: .invalidUTF8),
            Case(name: "an array, not an object", value: text("[1,2,3]"), reason: .schemaViolation),
            Case(name: "nested 100 deep", value: text(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)), reason: .malformedJSON),
            Case(name: "1e400", value: event(id: "c-1", replacing: ["extra": "1e400"]), reason: .schemaViolation, mentions: "out of range"),
            Case(name: "-1e400", value: event(id: "c-2", replacing: ["extra": "-1e400"]), reason: .schemaViolation, mentions: "out of range"),
            Case(name: "duplicate keys", value: text(#"{"type":"track","type":"identify","messageId":"c-3"}"#), reason: .malformedJSON, mentions: "duplicate"),
            Case(name: "NUL in messageId", value: event(id: #"c-4\u0000"#), reason: .schemaViolation, mentions: "NUL"),
            Case(name: "control character in messageId", value: event(id: #"c-5\u0001"#), reason: .schemaViolation, mentions: "messageId"),
            Case(name: "DEL in messageId", value: event(id: "c-6\u{7F}"), reason: .schemaViolation, mentions: "messageId"),
            Case(name: "NUL in userId", value: event(id: "c-7", replacing: ["userId": #""u\u0000""#]), reason: .schemaViolation, mentions: "NUL"),
            Case(name: "C1 control in userId", value: event(id: "c-8", replacing: ["userId": #""u\u0085""#]), reason: .schemaViolation, mentions: "userId"),
            Case(
                name: "control character in anonymousId", value: event(id: "c-9", replacing: ["anonymousId": #""a\u001b[31m""#]), reason: .schemaViolation,
                mentions: "anonymousId"),
            Case(name: "10 kB store id", value: event(id: "c-10", context: #"{"storeId":"\#(big)"}"#), reason: .schemaViolation, mentions: "context.storeId"),
            Case(
                name: "bidi control in store id", value: event(id: "c-11", context: #"{"storeId":"\#(store)\u202e"}"#), reason: .schemaViolation,
                mentions: "context.storeId"),
            Case(name: "messageId of 201 characters", value: event(id: String(repeating: "m", count: 201)), reason: .schemaViolation, mentions: "messageId"),
            Case(
                name: "year −1 after the offset", value: event(id: "c-12", replacing: ["timestamp": #""0000-01-01T00:00:00+00:01""#]), reason: .schemaViolation,
                mentions: "timestamp"),
            Case(
                name: "year 0", value: event(id: "c-13", replacing: ["timestamp": #""0000-06-01T00:00:00Z""#]), reason: .schemaViolation, mentions: "timestamp"),
            Case(
                name: "year 9999", value: event(id: "c-14", replacing: ["timestamp": #""9999-12-31T23:59:59Z""#]), reason: .schemaViolation,
                mentions: "timestamp"),
            Case(
                name: "next week", value: event(id: "c-15", replacing: ["timestamp": "\"\(now.addingTimeInterval(7 * 86_400).rfc3339)\""]),
                reason: .schemaViolation, mentions: "ahead"),
            Case(name: "1969", value: event(id: "c-16", replacing: ["timestamp": #""1969-07-20T20:17:40Z""#]), reason: .schemaViolation, mentions: "1970"),
            Case(name: "1 MB of [0],[0],…", value: event(id: "c-17", replacing: ["junk": tinyValues]), reason: .tooLarge, mentions: "JSON values"),
            Case(name: "a list of 90,000 numbers", value: event(id: "c-18", replacing: ["junk": longList]), reason: .tooLarge, mentions: "JSON values"),
            Case(name: "over 1 MiB", value: text(#"{"pad":""# + String(repeating: "x", count: (1 << 20) + 10) + "\"}"), reason: .tooLarge),
            Case(name: "raw control byte in a string", value: text("{\"type\":\"track\u{01}\"}"), reason: .malformedJSON),
            Case(name: "lone surrogate", value: event(id: "c-19", replacing: ["note": #""\ud800""#]), reason: .malformedJSON),
            Case(
                name: "a store the settings file does not name", value: event(id: "c-21", context: #"{"storeId":"invented-\#(store)"}"#),
                reason: .schemaViolation, mentions: "settings file"),
            Case(name: "type is a number", value: event(id: "c-20", replacing: ["type": "7"]), reason: .schemaViolation, mentions: "type"),
            Case(
                name: "forged dlq headers", value: text("not json at all"),
                headers: [
                    KafkaHeader(key: "dlq.reason", text: "schema_violation"), KafkaHeader(key: "dlq.source.topic", text: "email-commands"),
                    KafkaHeader(key: "dlq.source.partition", text: "0"),
                ], reason: .malformedJSON),
        ]
    }

    private var capture: [Case] {
        [
            Case(
                name: "name with CRLF", value: identify(#"{"email":"x@example.com","firstName":"Ada\r\nBcc: all@example.com"}"#), reason: .schemaViolation,
                mentions: "firstName"),
            Case(
                name: "name with a bidi override", value: identify(#"{"email":"x@example.com","lastName":"\u202egnp.exe"}"#), reason: .schemaViolation,
                mentions: "lastName"),
            Case(
                name: "email with a bidi control", value: event(id: "k-1", properties: ["email": #""ad\u202ea@example.com""#]), reason: .schemaViolation,
                mentions: "email"),
            Case(
                name: "email of 300 bytes", value: event(id: "k-2", properties: ["email": "\"\(String(repeating: "a", count: 300))@example.com\""]),
                reason: .schemaViolation, mentions: "email"),
            Case(name: "offer code with NUL", value: event(id: "k-3", properties: ["offer_code": #""HI\u0000""#]), reason: .schemaViolation, mentions: "NUL"),
            Case(
                name: "product id of 10 kB",
                value: track("Product Viewed", id: "k-4", properties: #"{"product_id":"\#(String(repeating: "p", count: 10_000))"}"#), reason: .schemaViolation,
                mentions: "product_id"),
            Case(
                name: "product id 1e300", value: track("Product Viewed", id: "k-5", properties: #"{"product_id":1e300}"#), reason: .schemaViolation,
                mentions: "product_id"),
            Case(
                name: "checkout with 5,000 products",
                value: track("Checkout Started", id: "k-6", properties: #"{"email":"k6@example.com","products":[\#(products(5_000))]}"#),
                reason: .schemaViolation, mentions: "at most 500"),
            Case(
                name: "consent text of 1 MB",
                value: event(id: "k-7", properties: ["consent": #"{"marketing":true,"text":"\#(String(repeating: "t", count: 1_000_000))"}"#]),
                reason: .schemaViolation, mentions: "consent.text"),
        ]
    }

    private var receipt: [Case] {
        [
            Case(name: "total 1e400", value: event(id: "r-1", properties: ["total": "1e400"]), reason: .schemaViolation, mentions: "out of range"),
            Case(name: "total 1e300", value: event(id: "r-2", properties: ["total": "1e300"]), reason: .schemaViolation, mentions: "properties.total"),
            Case(
                name: "price × quantity overflows",
                value: event(id: "r-3", properties: ["products": #"[{"product_id":"p","price":100000000000,"quantity":1000000}]"#]), reason: .schemaViolation,
                mentions: "out of range"),
            Case(
                name: "subtotal overflows across lines",
                value: event(
                    id: "r-4",
                    properties: [
                        "products": "[" + Array(repeating: #"{"product_id":"p","price":9000000000000,"quantity":1}"#, count: 3).joined(separator: ",") + "]"
                    ]), reason: .schemaViolation, mentions: "out of range"),
            Case(
                name: "price as a huge decimal string", value: event(id: "r-5", properties: ["products": #"[{"product_id":"p","price":"1e999999"}]"#]),
                reason: .schemaViolation, mentions: "price"),
            Case(
                name: "negative quantity", value: event(id: "r-6", properties: ["products": #"[{"product_id":"p","quantity":-1}]"#]), reason: .schemaViolation,
                mentions: "quantity"),
            Case(
                name: "quantity 1e7", value: event(id: "r-7", properties: ["products": #"[{"product_id":"p","quantity":10000000}]"#]), reason: .schemaViolation,
                mentions: "quantity"),
            Case(
                name: "5,000 products", value: event(id: "r-8", properties: ["products": "[\(products(5_000))]"]), reason: .schemaViolation,
                mentions: "at most 500"),
            Case(name: "unknown currency", value: event(id: "r-9", properties: ["currency": #""ZZZ""#]), reason: .schemaViolation, mentions: "currency"),
            Case(name: "order id with NUL", value: event(id: "r-10", properties: ["order_id": #""o\u0000""#]), reason: .schemaViolation, mentions: "NUL"),
            Case(
                name: "order id with a control character", value: event(id: "r-11", properties: ["order_id": #""o\u0007""#]), reason: .schemaViolation,
                mentions: "order_id"),
            Case(
                name: "product id of 10 kB",
                value: event(id: "r-12", properties: ["products": #"[{"product_id":"\#(String(repeating: "p", count: 10_000))"}]"#]), reason: .schemaViolation,
                mentions: "product_id"),
            Case(
                name: "first name with a line break", value: event(id: "r-13", context: #"{"storeId":"\#(store)","traits":{"firstName":"Ada\nTo: x"}}"#),
                reason: .schemaViolation, mentions: "firstName"),
            Case(name: "discount 1e300", value: event(id: "r-14", properties: ["discount": "1e300"]), reason: .schemaViolation, mentions: "discount"),
        ]
    }

    private var survey: [Case] {
        // About 850 kB: under the 1 MiB size limit, so that the parser's value budget is what refuses it.
        let interests = "[" + (0..<100_000).map { "\"é\(String($0, radix: 36))\"" }.joined(separator: ",") + "]"
        return [
            Case(
                name: "100,000 non-ASCII interests", value: event(id: "v-1", properties: ["answers": #"{"interests":\#(interests)}"#]), reason: .tooLarge,
                mentions: "JSON values"),
            Case(
                name: "150 interests",
                value: event(id: "v-2", properties: ["answers": #"{"interests":[\#((0..<150).map { "\"i\($0)\"" }.joined(separator: ","))]}"#]),
                reason: .schemaViolation, mentions: "at most 100"),
            Case(
                name: "150 channels",
                value: event(id: "v-3", properties: ["answers": #"{"channels":[\#((0..<150).map { "\"c\($0)\"" }.joined(separator: ","))]}"#]),
                reason: .schemaViolation, mentions: "at most 100"),
            Case(
                name: "1,000 habits",
                value: event(id: "v-4", properties: ["answers": #"{"habits":{\#((0..<1_000).map { "\"h\($0)\":\"x\"" }.joined(separator: ","))}}"#]),
                reason: .schemaViolation, mentions: "habits"),
            Case(
                name: "1,000 answer keys",
                value: event(id: "v-5", properties: ["answers": "{" + (0..<1_000).map { "\"k\($0)\":1" }.joined(separator: ",") + "}"]),
                reason: .schemaViolation, mentions: "answers"),
            Case(name: "survey id with NUL", value: event(id: "v-6", properties: ["survey_id": #""s\u0000""#]), reason: .schemaViolation, mentions: "NUL"),
            Case(
                name: "interest with a control character", value: event(id: "v-7", properties: ["answers": #"{"interests":["te\u0008a"]}"#]),
                reason: .schemaViolation, mentions: "interests"),
            Case(
                name: "answers nested 100 deep",
                value: event(id: "v-8", properties: ["answers": #"{"x":\#(String(repeating: "[", count: 100) + String(repeating: "]", count: 100))}"#]),
                reason: .malformedJSON),
        ]
    }

    private func identify(_ traits: String) -> [UInt8] {
        text(
            #"{"type":"identify","messageId":"id-\#(traits.utf8.count)","timestamp":"\#(timestamp)","userId":"u-1","context":{"storeId":"\#(store)"},"traits":\#(traits)}"#
        )
    }

    private func track(_ event: String, id: String, properties: String) -> [UInt8] {
        text(
            #"{"type":"track","event":"\#(event)","messageId":"\#(id)","timestamp":"\#(timestamp)","anonymousId":"anon-\#(id)","context":{"storeId":"\#(store)"},"properties":\#(properties)}"#
        )
    }

    private func products(_ count: Int) -> String {
        // Two JSON values each, so that the list's own limit refuses it before the message's value budget does.
        (0..<count).map { #"{"product_id":"p-\#($0)"}"# }.joined(separator: ",")
    }
}
