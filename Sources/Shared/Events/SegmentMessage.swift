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

    /// A message from its parts (the decoder validates; tests and tools build them directly).
    public init(
        kind: Kind, messageID: String, timestamp: Date, userID: String?, anonymousID: String?, storeID: String, event: String?,
        properties: [String: JSONValue], traits: [String: JSONValue], context: [String: JSONValue]
    ) {
        self.kind = kind
        self.messageID = messageID
        self.timestamp = timestamp
        self.userID = userID
        self.anonymousID = anonymousID
        self.storeID = storeID
        self.event = event
        self.properties = properties
        self.traits = traits
        self.context = context
    }

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
    ///   - now: The worker's clock: a `timestamp` more than ``futureAllowance`` ahead of it is refused.
    /// - Throws: ``DecodeFailure`` with the contract's reason.
    public static func decode(_ bytes: ArraySlice<UInt8>, sizeLimit: Int = 1 << 20, now: Date = Date()) throws(DecodeFailure) -> DecodedMessage {
        guard bytes.count <= sizeLimit else {
            throw DecodeFailure(.tooLarge, "message of \(bytes.count) bytes exceeds the \(sizeLimit)-byte limit")
        }
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw DecodeFailure(.invalidUTF8, "message is not valid UTF-8")
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes, limits: .events)
        } catch {
            switch error.kind {
            case .syntax, .duplicateKey: throw DecodeFailure(.malformedJSON, "message is \(error.kind == .syntax ? "" : "invalid JSON: ")\(error)")
            case .nonFiniteNumber, .nulCharacter: throw DecodeFailure(.schemaViolation, "message holds \(error)")
            case .tooManyValues:
                throw DecodeFailure(.tooLarge, "message holds more than \(JSONValue.Limits.events.maximumValues) JSON values (stopped at byte \(error.offset))")
            }
        }
        guard case .object(let root) = value else {
            throw DecodeFailure(.schemaViolation, "message is a JSON \(value.typeName), expected an object")
        }
        return try validate(root, now: now)
    }

    /// How far ahead of the worker's clock a `timestamp` may be: clocks drift, a day does not. A timestamp within it
    /// is taken as the worker's clock; one further ahead is refused.
    public static let futureAllowance: TimeInterval = 86_400

    private static func validate(_ root: [String: JSONValue], now: Date) throws(DecodeFailure) -> DecodedMessage {
        let type = try requiredString(root, "type")
        if ignoredTypes.contains(type) { return .skipped(type: type) }
        guard let kind = Kind(rawValue: type) else {
            throw DecodeFailure(.schemaViolation, "type must be identify or track")
        }
        let messageID = try EventFields.identifier(requiredString(root, "messageId"), path: "messageId")
        guard (1...200).contains(messageID.count) else {
            throw DecodeFailure(.schemaViolation, "messageId must be 1 to 200 characters")
        }
        let timestampText = try requiredString(root, "timestamp")
        guard timestampText.utf8.count <= 64, let claimed = Date(rfc3339: timestampText) else {
            throw DecodeFailure(.schemaViolation, "timestamp is not an RFC 3339 date-time")
        }
        guard claimed.timeIntervalSince1970 >= 0 else {
            throw DecodeFailure(.schemaViolation, "timestamp must not be before 1970-01-01T00:00:00Z")
        }
        guard claimed.timeIntervalSince(now) <= futureAllowance else {
            throw DecodeFailure(.schemaViolation, "timestamp must not be more than a day ahead of the worker's clock (\(now.rfc3339))")
        }
        // Nothing happened after it was read: a timestamp ahead of the worker's clock (a storefront's clock skew) is
        // taken as that clock, so that caps, quiet hours and staleness are never judged at a moment yet to come.
        let timestamp = min(claimed, now)
        let userID = try optionalString(root, "userId").map { (id) throws(DecodeFailure) in try EventFields.identifier(id, path: "userId") }
        let anonymousID = try optionalString(root, "anonymousId").map { (id) throws(DecodeFailure) in try EventFields.identifier(id, path: "anonymousId") }
        var context = try optionalObject(root, "context")
        let contextTraits = try optionalObject(context, "traits", path: "context.traits")
        let storeID = try EventFields.identifier(optionalString(context, "storeId", path: "context.storeId") ?? "default", path: "context.storeId")
        guard !storeID.isEmpty else { throw DecodeFailure(.schemaViolation, "context.storeId must not be empty") }
        for key in ["locale", "timezone", "ip", "userAgent"] {
            _ = try EventFields.string(key, in: context, path: "context.\(key)")
        }
        // A locale or time zone Foundation does not know is dropped: the store's own is used instead.
        if let locale = context["locale"]?.stringValue, !LocaleCatalog.isKnown(locale: locale) { context["locale"] = nil }
        if let zone = context["timezone"]?.stringValue, !LocaleCatalog.isKnown(timeZone: zone) { context["timezone"] = nil }
        _ = try optionalString(contextTraits, "email", path: "context.traits.email")
        var message = SegmentMessage(
            kind: kind, messageID: messageID, timestamp: timestamp, userID: userID, anonymousID: anonymousID,
            storeID: storeID, event: nil, properties: [:], traits: [:], context: context)
        switch kind {
        case .track:
            let event = try requiredString(root, "event")
            guard event.utf8.count <= 200 else { throw DecodeFailure(.schemaViolation, "event must be at most 200 bytes") }
            message.event = event
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

}
