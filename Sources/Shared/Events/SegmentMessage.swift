import Foundation

/// A Segment Spec message (`identify` or `track`) as storefronts publish it, validated against the contract.
public struct SegmentMessage: Sendable, Equatable {
    /// The Segment message type.
    public enum Kind: String, Sendable {
        case identify, track
    }

    /// `identify` or `track`.
    public var kind: Kind
    /// The de-duplication key within a store (1–200 characters).
    public var messageID: String
    /// When it happened.
    public var timestamp: Date
    /// The known user's id.
    public var userID: String?
    /// The anonymous visitor's id.
    public var anonymousID: String?
    /// The tenant store: `context.storeId`, default `"default"`.
    public var storeID: String
    /// The `track` event's name (`Order Completed`, …); `nil` for `identify`.
    public var event: String?
    /// `track` properties (an empty object when absent).
    public var properties: [String: JSONValue]
    /// `identify` traits (an empty object when absent).
    public var traits: [String: JSONValue]
    /// The whole `context` object (an empty object when absent).
    public var context: [String: JSONValue]

    /// `traits.email` for identify, else `properties.email`, else `context.traits.email`, as given.
    public var email: String? {
        traits["email"]?.stringValue ?? properties["email"]?.stringValue ?? context["traits"]?["email"]?.stringValue
    }

    /// The contract's shopper key: `storeId + "/" + (userId ?? anonymousId ?? lowercased email)`.
    public var shopperKey: String {
        storeID + "/" + (userID ?? anonymousID ?? (email?.lowercased() ?? ""))
    }
}

/// Why a message could not be read: the contract's `dlq.reason`, with a human-readable explanation.
public struct DecodeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The dead-letter reasons of the contract.
    public enum Reason: String, Sendable, CaseIterable {
        case malformedJSON = "malformed_json"
        case invalidUTF8 = "invalid_utf8"
        case schemaViolation = "schema_violation"
        case tooLarge = "too_large"
        case handlerFailure = "handler_failure"
    }

    /// The `dlq.reason`.
    public var reason: Reason
    /// The `dlq.message`: what was wrong, never the offending value itself (it may be personal data).
    public var message: String

    /// A failure for `reason`.
    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { "\(reason.rawValue): \(message)" }
}

/// The outcome of reading one Kafka message.
public enum DecodedMessage: Sendable, Equatable {
    /// A valid message for a worker to handle.
    case event(SegmentMessage)
    /// Valid Segment traffic that no worker acts on (`page`, `screen`, `group`, `alias`): skipped and counted.
    case skipped(type: String)
}

extension SegmentMessage {
    /// Segment message types that are valid traffic but carry nothing for Rapport.
    public static let ignoredTypes: Set<String> = ["page", "screen", "group", "alias"]

    /// Reads and validates one message's bytes.
    ///
    /// - Parameters:
    ///   - bytes: The Kafka message value.
    ///   - sizeLimit: Larger messages are refused unread. Default: 1 MiB.
    /// - Throws: ``DecodeFailure`` with the contract's reason.
    public static func decode(_ bytes: ArraySlice<UInt8>, sizeLimit: Int = 1 << 20) throws(DecodeFailure) -> DecodedMessage {
        guard bytes.count <= sizeLimit else {
            throw DecodeFailure(.tooLarge, "message of \(bytes.count) bytes exceeds the \(sizeLimit)-byte limit")
        }
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw DecodeFailure(.invalidUTF8, "message is not valid UTF-8")
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw DecodeFailure(.malformedJSON, "message is not valid JSON (stopped at byte \(error.offset))")
        }
        guard case .object(let root) = value else {
            throw DecodeFailure(.schemaViolation, "message is a JSON \(value.typeName), expected an object")
        }
        return try validate(root)
    }

    private static func validate(_ root: [String: JSONValue]) throws(DecodeFailure) -> DecodedMessage {
        let type = try requiredString(root, "type")
        if ignoredTypes.contains(type) { return .skipped(type: type) }
        guard let kind = Kind(rawValue: type) else {
            throw DecodeFailure(.schemaViolation, "type must be identify or track")
        }
        let messageID = try requiredString(root, "messageId")
        guard (1...200).contains(messageID.count) else {
            throw DecodeFailure(.schemaViolation, "messageId must be 1 to 200 characters")
        }
        let timestampText = try requiredString(root, "timestamp")
        guard let timestamp = parseTimestamp(timestampText) else {
            throw DecodeFailure(.schemaViolation, "timestamp is not an RFC 3339 date-time")
        }
        let userID = try optionalString(root, "userId")
        let anonymousID = try optionalString(root, "anonymousId")
        let context = try optionalObject(root, "context")
        let contextTraits = try optionalObject(context, "traits", path: "context.traits")
        let storeID = try optionalString(context, "storeId", path: "context.storeId") ?? "default"
        guard !storeID.isEmpty else { throw DecodeFailure(.schemaViolation, "context.storeId must not be empty") }
        for key in ["locale", "timezone", "ip", "userAgent"] {
            _ = try optionalString(context, key, path: "context.\(key)")
        }
        _ = try optionalString(contextTraits, "email", path: "context.traits.email")
        var message = SegmentMessage(
            kind: kind, messageID: messageID, timestamp: timestamp, userID: userID, anonymousID: anonymousID,
            storeID: storeID, event: nil, properties: [:], traits: [:], context: context)
        switch kind {
        case .track:
            message.event = try requiredString(root, "event")
            message.properties = try optionalObject(root, "properties")
        case .identify:
            message.traits = try optionalObject(root, "traits")
            _ = try optionalString(message.traits, "email", path: "traits.email")
        }
        let hasEmailIdentity = kind == .identify && message.traits["email"]?.stringValue?.isEmpty == false
        guard (userID?.isEmpty == false) || (anonymousID?.isEmpty == false) || hasEmailIdentity else {
            throw DecodeFailure(.schemaViolation, "userId or anonymousId is required")
        }
        return .event(message)
    }

    private static func requiredString(_ object: [String: JSONValue], _ key: String) throws(DecodeFailure) -> String {
        guard let value = object[key], value != .null else { throw DecodeFailure(.schemaViolation, "\(key) is required") }
        guard let text = value.stringValue else {
            throw DecodeFailure(.schemaViolation, "\(key) must be a string, not a \(value.typeName)")
        }
        return text
    }

    private static func optionalString(_ object: [String: JSONValue], _ key: String, path: String? = nil) throws(DecodeFailure) -> String? {
        guard let value = object[key], value != .null else { return nil }
        guard let text = value.stringValue else {
            throw DecodeFailure(.schemaViolation, "\(path ?? key) must be a string, not a \(value.typeName)")
        }
        return text
    }

    private static func optionalObject(_ object: [String: JSONValue], _ key: String, path: String? = nil) throws(DecodeFailure) -> [String: JSONValue] {
        guard let value = object[key], value != .null else { return [:] }
        guard let members = value.objectValue else {
            throw DecodeFailure(.schemaViolation, "\(path ?? key) must be an object, not a \(value.typeName)")
        }
        return members
    }

    /// Parses an RFC 3339 date-time (`2026-11-25T05:54:55.25+01:00`, `…Z`; `t`/`z` and a space for `T` accepted).
    /// Hand-written: Foundation's parser loads ICU data on first use (seconds) and costs microseconds per call.
    public static func parseTimestamp(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        var index = 0
        func digits(_ count: Int) -> Int? {
            guard index + count <= bytes.count else { return nil }
            var value = 0
            for _ in 0..<count {
                let byte = bytes[index]
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                index += 1
            }
            return value
        }
        func expect(_ characters: String) -> Bool {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2), expect("Tt "),
            let hour = digits(2), expect(":"), let minute = digits(2), expect(":"), let second = digits(2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var fraction = 0.0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                fraction += Double(bytes[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        if expect("Zz") {
            offset = 0
        } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            guard let hours = digits(2), expect(":"), let minutes = digits(2), hours < 24, minutes < 60 else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        // Days from 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }
}
