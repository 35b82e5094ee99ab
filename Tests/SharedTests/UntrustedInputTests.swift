import Foundation
import Testing

@testable import Shared

/// The decoding boundary against hostile input: each rule of the untrusted-input contract, one refusal at a time.
@Suite struct UntrustedInputTests {
    static let now = Date(timeIntervalSince1970: 1_796_000_000)

    private func decode(_ text: String) throws(DecodeFailure) -> DecodedMessage {
        try SegmentMessage.decode(ArraySlice(Array(text.utf8)), now: Self.now)
    }

    private func failure(_ text: String) -> DecodeFailure? {
        do {
            _ = try decode(text)
            return nil
        } catch {
            return error
        }
    }

    /// A valid track message with `fields` spliced in (each `"key": value` pair as JSON text).
    private func track(_ fields: String = "", timestamp: String = "2026-12-01T00:00:00Z", context: String = "{}") -> String {
        #"{"type":"track","event":"Product Viewed","messageId":"m-1","timestamp":"\#(timestamp)","anonymousId":"a-1","context":\#(context),"properties":{"product_id":"p"}\#(fields)}"#
    }

    // MARK: the parser

    @Test func aNumberBeyondDoubleIsRefusedNotInfinity() {
        #expect(throws: JSONValue.SyntaxError(offset: 6, kind: .nonFiniteNumber)) { try JSONValue.parse(ArraySlice("[1e400]".utf8)) }
        #expect(failure(track(#","total":1e400"#))?.reason == .schemaViolation)
        #expect(failure(track(#","total":-1e400"#))?.message.contains("out of range") == true)
    }

    @Test func duplicateKeysAreRefused() {
        #expect(throws: JSONValue.SyntaxError.self) { try JSONValue.parse(ArraySlice(#"{"a":1,"a":2}"#.utf8)) }
        #expect(failure(#"{"type":"track","type":"identify","messageId":"m","timestamp":"2026-12-01T00:00:00Z","userId":"u"}"#)?.reason == .malformedJSON)
    }

    @Test func anEscapedNulIsRefusedAnywhere() {
        #expect(throws: JSONValue.SyntaxError(offset: 9, kind: .nulCharacter)) { try JSONValue.parse(ArraySlice(#"["a\u0000"]"#.utf8)) }
        #expect(failure(track(#","note":"x\u0000y""#))?.reason == .schemaViolation)
    }

    @Test func aMessageOfTinyValuesRunsOutOfBudgetInsteadOfMemory() {
        let many = "[" + Array(repeating: "[0]", count: 200_000).joined(separator: ",") + "]"
        #expect(many.utf8.count < 1 << 20)
        #expect(throws: JSONValue.SyntaxError.self) { try JSONValue.parse(ArraySlice(many.utf8), limits: .events) }
        #expect(failure(track(#","junk":"# + many))?.reason == .tooLarge)
        // Trusted documents (the worker's own) have no budget.
        #expect((try? JSONValue.parse(ArraySlice(many.utf8)))?.arrayValue?.count == 200_000)
    }

    // MARK: identifiers

    @Test(arguments: ["messageId", "userId", "anonymousId"])
    func anIdentifierWithAControlCharacterIsRefused(field: String) {
        var ids = ["messageId": #""m""#, "anonymousId": #""a""#]
        ids[field] = #""a\u0001b""#
        let text =
            #"{"type":"track","event":"x","timestamp":"2026-12-01T00:00:00Z","#
            + ids.sorted { $0.key < $1.key }.map { #""\#($0.key)":\#($0.value)"# }.joined(separator: ",") + "}"
        let refused = failure(text)
        #expect(refused?.reason == .schemaViolation)
        #expect(refused?.message.contains(field) == true, "names the field: \(refused?.message ?? "")")
    }

    @Test func aBidiControlInAnIdIsRefused() {
        #expect(failure(track(context: #"{"storeId":"shop\u202e"}"#))?.message.contains("context.storeId") == true)
    }

    @Test func aStoreIdOfTenKilobytesIsRefused() {
        let refused = failure(track(context: #"{"storeId":"\#(String(repeating: "s", count: 10_000))"}"#))
        #expect(refused?.reason == .schemaViolation)
        #expect(refused?.message == "context.storeId must be at most 256 bytes of UTF-8")
    }

    @Test func identifiersAreNormalisedToNFCSoThatEqualSpellingsAreOneKey() throws {
        // "é" precomposed (U+00E9) and decomposed (e + U+0301): equal to Swift, different bytes to PostgreSQL.
        let composed = try decode(track(context: #"{"storeId":"caf\u00e9"}"#))
        let decomposed = try decode(track(context: #"{"storeId":"cafe\u0301"}"#))
        guard case .event(let a) = composed, case .event(let b) = decomposed else {
            Issue.record("not events")
            return
        }
        #expect(Array(a.storeID.utf8) == Array(b.storeID.utf8))
        #expect(Array(b.storeID.utf8) == Array("caf\u{00E9}".utf8))
    }

    @Test func aNameWithALineBreakOrBidiControlIsRefused() throws {
        #expect(throws: DecodeFailure.self) { try EventFields.name("n", in: ["n": .string("Ada\r\nBcc: x@example.com")], path: "traits.firstName") }
        #expect(throws: DecodeFailure.self) { try EventFields.name("n", in: ["n": .string("Ada\u{2067}")], path: "traits.firstName") }
        #expect(throws: DecodeFailure.self) { try EventFields.name("n", in: ["n": .string(String(repeating: "a", count: 201))], path: "traits.firstName") }
        #expect(try EventFields.name("n", in: ["n": .string("Zoë O'Brien-Łukasz")], path: "traits.firstName") == "Zoë O'Brien-Łukasz")
    }

    // MARK: timestamps

    @Test(arguments: ["0000-01-01T00:00:00+00:01", "0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z"])
    func aTimestampOutsideTheWindowIsRefused(timestamp: String) {
        let refused = failure(track(timestamp: timestamp))
        #expect(refused?.reason == .schemaViolation)
        #expect(refused?.message.hasPrefix("timestamp") == true)
    }

    @Test func nextWeekIsRefusedAndAnHourAheadIsTakenAsTheWorkersClock() throws {
        let nextWeek = Self.now.addingTimeInterval(7 * 86_400).rfc3339
        #expect(failure(track(timestamp: nextWeek))?.message.contains("ahead") == true)
        guard case .event(let message) = try decode(track(timestamp: Self.now.addingTimeInterval(3600).rfc3339)) else {
            Issue.record("not an event")
            return
        }
        #expect(message.timestamp == Self.now)
    }

    @Test func rfc3339RoundTripsForEveryYearFrom1970To9999() throws {
        var year = 1970
        while year <= 9999 {
            for (month, day) in [(1, 1), (2, 28), (12, 31)] {
                let text = String(format: "%04d-%02d-%02dT23:59:59.999Z", year, month, day)
                let date = try #require(Date(rfc3339: text), "\(text)")
                #expect(date.rfc3339 == text)
            }
            year += year < 2100 ? 1 : 37
        }
        #expect(Date(rfc3339: "9999-12-31T23:59:59.999Z")?.rfc3339 == "9999-12-31T23:59:59.999Z")
    }

    @Test func theWriterIsTotalOutsideFourDigitYears() {
        // Year −1 once trapped the writer (a UInt8 overflow) and took a worker down.
        #expect(Date(timeIntervalSince1970: -62_167_219_260).rfc3339 == "0000-01-01T00:00:00.000Z")
        #expect(Date(timeIntervalSince1970: 1e15).rfc3339 == "9999-12-31T23:59:59.999Z")
        #expect(Date(timeIntervalSince1970: .infinity).rfc3339 == "9999-12-31T23:59:59.999Z")
        #expect(Date(timeIntervalSince1970: -.infinity).rfc3339 == "0000-01-01T00:00:00.000Z")
        #expect(Date(timeIntervalSince1970: .nan).rfc3339 == "1970-01-01T00:00:00.000Z")
    }

    // MARK: locales

    @Test func anUnknownLocaleOrTimeZoneIsDroppedForTheStoresOwn() throws {
        guard case .event(let known) = try decode(track(context: #"{"locale":"de-DE","timezone":"Europe/Berlin"}"#)),
            case .event(let unknown) = try decode(track(context: #"{"locale":"xx-\#(String(repeating: "Y", count: 40))","timezone":"Mars/Olympus"}"#))
        else {
            Issue.record("not events")
            return
        }
        #expect(known.context["locale"] == .string("de-DE") && known.context["timezone"] == .string("Europe/Berlin"))
        #expect(unknown.context["locale"] == nil && unknown.context["timezone"] == nil)
        #expect(LocaleCatalog.isKnown(currency: "EUR") && LocaleCatalog.isKnown(currency: "JPY") && !LocaleCatalog.isKnown(currency: "ZZZ"))
    }

    // MARK: money

    @Test func moneyArithmeticIsCheckedAtTheLimits() {
        let largest = Money(minorUnits: Money.maximumMinorUnits, currency: "EUR")
        #expect(largest.adding(Money(minorUnits: 1, currency: "EUR")) == nil)
        #expect(largest.adding(Money(minorUnits: -1, currency: "EUR"))?.minorUnits == Money.maximumMinorUnits - 1)
        #expect(Money(minorUnits: -Money.maximumMinorUnits, currency: "EUR").subtracting(Money(minorUnits: 1, currency: "EUR")) == nil)
        #expect(Money(minorUnits: Int64.max, currency: "EUR").multiplied(by: 2) == nil, "an overflow is nil, not a trap")
        #expect(Money(minorUnits: 10_000_000_000_000, currency: "EUR").multiplied(by: 1_000_000) == nil)
        #expect(Money(minorUnits: 5990, currency: "EUR").multiplied(by: 3)?.text == "179.70")
        #expect(Money(Double.infinity, currency: "EUR") == nil)
        #expect(Money(1e300, currency: "EUR") == nil)
        #expect(Money(decimalText: "1e999999", currency: "EUR") == nil)
        #expect(Money(decimalText: "9999999999999.99", currency: "EUR")?.minorUnits == 999_999_999_999_999)
        #expect(Money(decimalText: "10000000000000.00", currency: "EUR") == nil)
        #expect(Money(decimalText: "59.90", currency: "EUR")?.text == "59.90")
    }

    /// A JSON number becomes minor units by integer rounding of its shortest spelling; `Decimal` (the decimal-string
    /// path) is the reference it must agree with, amount for amount, in every exponent of currency.
    @Test func aNumberIsRoundedAsItsDecimalTextIs() throws {
        var generator = SystemRandomNumberGenerator()
        var amounts: [Double] = [
            0, -0.0, 0.005, 0.015, 0.285, 1.005, 2.675, 59.9, 0.1 + 0.2, 1e-7, 5e-5, 4.9999e-3, 123_456_789.125, -0.5, -2.5, 1e15, 9_999_999_999_999.99,
        ]
        for _ in 0..<20_000 {
            let scale = [1.0, 10, 100, 1000, 10_000, 1e6][Int.random(in: 0..<6, using: &generator)]
            amounts.append(Double(Int64.random(in: -10_000_000_000...10_000_000_000, using: &generator)) / scale)
            amounts.append(Double.random(in: -1e6...1e6, using: &generator))
        }
        for currency in ["EUR", "JPY", "BHD", "CLF"] {
            for amount in amounts {
                let reference = Money(try #require(Decimal(string: amount.description, locale: Locale(identifier: "en_US_POSIX"))), currency: currency)
                #expect(Money(amount, currency: currency) == reference, "\(amount) \(currency)")
            }
        }
        #expect(Money(9_999_999_999_999.998, currency: "EUR") == nil, "rounds past the largest amount")
        #expect(Money(1e16 - 2, currency: "JPY") == nil)
        #expect(Money(0.285, currency: "EUR")?.minorUnits == 29, "the amount the JSON text wrote, half away from zero")
        #expect(Money(-0.285, currency: "EUR")?.minorUnits == -29)
    }

    // MARK: lists

    /// 100,000 strings, half of them repeats: a quadratic `contains` took minutes here, `uniqued()` a tenth of a
    /// second (a time is not asserted; a quadratic version would make this test the suite's slowest by far).
    @Test func uniquedIsLinearAndKeepsFirstOccurrences() {
        #expect([3, 1, 3, 2, 1].uniqued() == [3, 1, 2])
        let many = (0..<100_000).map { "interest-\($0 % 50_000)" }
        #expect(many.uniqued().count == 50_000)
    }

    // MARK: dead-letter headers

    @Test func anIncomingMessagesDlqHeadersAreRenamedAndTheWorkersComeLast() {
        let source = KafkaMessage(
            topicPartition: TopicPartition(topic: "shopper-events", partition: 1), offset: 7, key: nil, value: ArraySlice("x".utf8),
            headers: [KafkaHeader(key: "dlq.source.topic", text: "email-commands"), KafkaHeader(key: "dlq.reason", text: "forged")])
        let letter = DeadLetter(source: source, failure: DecodeFailure(.malformedJSON, "no")).outbound(
            topic: "shopper-events-dlq", worker: "W", failedAt: Self.now)
        #expect(letter.header("dlq.source.topic") == "shopper-events")
        #expect(letter.header("original.dlq.source.topic") == "email-commands")
        #expect(letter.headers.filter { $0.key.hasPrefix("dlq.") }.count == 7)
        let read = KafkaMessage(
            topicPartition: TopicPartition(topic: "shopper-events-dlq", partition: 0), offset: 0, key: nil, value: ArraySlice(letter.value),
            headers: letter.headers)
        #expect(DeadLetterReplay.originalHeaders(read.headers) == source.headers, "a replay republishes the headers as they were")
        // A dead letter written before the renaming: the worker's header is the last of its name.
        let old = KafkaMessage(
            topicPartition: read.topicPartition, offset: 1, key: nil, value: read.value,
            headers: source.headers + [KafkaHeader(key: "dlq.source.topic", text: "shopper-events")])
        #expect(old.workerHeader("dlq.source.topic") == "shopper-events")
    }

    // MARK: configuration an outsider can reach

    @Test func kubernetesServiceVariablesAreIgnoredNotPassedToLibrdkafka() throws {
        let configuration = try KafkaConfiguration(
            environment: Environment([
                "KAFKA_UI_SERVICE_HOST": "10.0.0.7", "KAFKA_UI_SERVICE_PORT": "8080", "KAFKA_UI_SERVICE_PORT_HTTP": "8080",
                "KAFKA_UI_PORT": "tcp://10.0.0.7:8080", "KAFKA_UI_PORT_8080_TCP": "tcp://10.0.0.7:8080", "KAFKA_UI_PORT_8080_TCP_PROTO": "tcp",
                "KAFKA_UI_PORT_8080_TCP_PORT": "8080", "KAFKA_UI_PORT_8080_TCP_ADDR": "10.0.0.7", "KAFKA_SECURITY_PROTOCOL": "plaintext",
            ]),
            clientID: "test")
        #expect(configuration.properties == ["security.protocol": "plaintext"])
        #expect(configuration.ignoredVariables.count == 8)
        #expect(!KafkaConfiguration.isServiceLink("KAFKA_SASL_PASSWORD") && !KafkaConfiguration.isServiceLink("KAFKA_SOCKET_TIMEOUT_MS"))
    }

    @Test func theProbeServersAddressIsConfigurable() throws {
        let descriptor = WorkerDescriptor(
            name: "CaptureWorker", component: "capture", defaultGroupID: "rapport-capture", defaultHTTPPort: 8081, inputTopic: { $0.shopperEvents },
            migrations: { [] })
        #expect(try WorkerConfiguration(descriptor: descriptor, environment: Environment([:])).httpHost == "0.0.0.0")
        let local = try WorkerConfiguration(descriptor: descriptor, environment: Environment(["HTTP_HOST": "127.0.0.1", "BATCH_MAX_BYTES": "1048576"]))
        #expect(local.httpHost == "127.0.0.1" && local.batchMaxBytes == 1 << 20)
    }

    @Test func storesTheSettingsFileDoesNotNameAreRefusedAndLabelledOther() throws {
        let named = try StoreDirectory(json: Array(#"{"stores": {"acme": {}}}"#.utf8), setting: "STORE_SETTINGS_FILE")
        #expect(named.unknownStores == .deadLetter)
        #expect(named.accepts("acme") && !named.accepts("invented"))
        #expect(named.metricLabel(for: "acme") == "acme" && named.metricLabel(for: "invented-\(UUID())") == "other")
        let open = try StoreDirectory(json: Array(#"{"unknown_stores": "defaults", "stores": {}}"#.utf8), setting: "STORE_SETTINGS_FILE")
        #expect(open.accepts("invented"))
        #expect(StoreDirectory().accepts("invented"), "without a settings file every store gets the defaults")
        #expect(throws: ConfigurationError.self) { try StoreDirectory(json: Array(#"{"unknown_stores": "allow"}"#.utf8), setting: "STORE_SETTINGS_FILE") }
    }
}
