import Foundation

/// Reading an event's fields the way every worker does: a missing or `null` field is absent, a wrongly typed one a
/// `schema_violation` naming its path (`properties.products[2].quantity`), and every value from outside checked
/// against a rule that the refusal names — ids bounded and free of control characters, lists bounded and
/// de-duplicated, numbers in range.
public enum EventFields {
    /// The most UTF-8 bytes of an identifier (`userId`, `context.storeId`, `order_id`, …): room for any real id,
    /// and far below what a PostgreSQL index row holds (about 2,700 bytes).
    public static let identifierBytes = 256
    /// The most UTF-8 bytes of a name that reaches a command's header-like fields (`to.name`).
    public static let nameBytes = 200

    /// The most UTF-8 bytes of other free text (a product's name, a URL, consent text). Default of ``string(_:in:path:maximumBytes:)``.
    public static let textBytes = 8 << 10

    /// The string at `key`, if present, of at most `maximumBytes` bytes.
    /// - Throws: ``DecodeFailure`` when it is not a string, or longer.
    public static func string(_ key: String, in object: [String: JSONValue], path: String, maximumBytes: Int = textBytes) throws(DecodeFailure) -> String? {
        guard let value = object[key], value != .null else { return nil }
        guard let text = value.stringValue else { throw DecodeFailure(.schemaViolation, "\(path) must be a string, not a \(value.typeName)") }
        guard text.utf8.count <= maximumBytes else { throw DecodeFailure(.schemaViolation, "\(path) must be at most \(maximumBytes) bytes of UTF-8") }
        return text
    }

    /// An identifier at `key` that may be a string or an integral number (`"product_id": 42`), as checked text
    /// (``identifier(_:path:)``).
    /// - Throws: ``DecodeFailure`` when it is neither, or breaks a rule.
    public static func identifier(_ key: String, in object: [String: JSONValue], path: String) throws(DecodeFailure) -> String? {
        guard let value = object[key], value != .null else { return nil }
        if let text = value.stringValue { return try identifier(text, path: path) }
        if let number = value.numberValue, number == number.rounded(), abs(number) < 1e15 { return String(Int64(number)) }
        throw DecodeFailure(.schemaViolation, "\(path) must be a string or an integer, not a \(value.typeName)")
    }

    /// `text` as an identifier: at most ``identifierBytes`` bytes, no control character (C0, DEL, C1) and no bidi
    /// control, normalised to NFC — so that two spellings Swift compares equal are one key to PostgreSQL too.
    /// - Throws: ``DecodeFailure`` naming `path` and the rule.
    public static func identifier(_ text: String, path: String) throws(DecodeFailure) -> String {
        let normalised = text.nfc
        guard normalised.utf8.count <= identifierBytes else {
            throw DecodeFailure(.schemaViolation, "\(path) must be at most \(identifierBytes) bytes of UTF-8")
        }
        guard !normalised.unicodeScalars.contains(where: \.isControlOrBidi) else {
            throw DecodeFailure(.schemaViolation, "\(path) must not contain control or bidi-control characters")
        }
        return normalised
    }

    /// A person's name at `key` (it reaches `to.name`, a header of the email): at most ``nameBytes`` bytes, no line
    /// break, control or bidi-control character, NFC.
    /// - Throws: ``DecodeFailure`` naming `path` and the rule.
    public static func name(_ key: String, in object: [String: JSONValue], path: String) throws(DecodeFailure) -> String? {
        guard let text = try string(key, in: object, path: path)?.nfc else { return nil }
        guard text.utf8.count <= nameBytes else { throw DecodeFailure(.schemaViolation, "\(path) must be at most \(nameBytes) bytes of UTF-8") }
        guard
            !text.unicodeScalars.contains(where: {
                $0.isControlOrBidi || $0.properties.generalCategory == .lineSeparator || $0.properties.generalCategory == .paragraphSeparator
            })
        else {
            throw DecodeFailure(.schemaViolation, "\(path) must not contain line breaks, control or bidi-control characters")
        }
        return text
    }

    /// The array at `key`, if present, of at most `limit` elements.
    /// - Throws: ``DecodeFailure`` when it is not an array or is longer.
    public static func array(_ key: String, in object: [String: JSONValue], path: String, limit: Int) throws(DecodeFailure) -> [JSONValue]? {
        guard let value = object[key], value != .null else { return nil }
        guard let elements = value.arrayValue else { throw DecodeFailure(.schemaViolation, "\(path) must be an array, not \(value.typeNameWithArticle)") }
        guard elements.count <= limit else { throw DecodeFailure(.schemaViolation, "\(path) must have at most \(limit) elements, not \(elements.count)") }
        return elements
    }

    /// The normalised email address in `text`, if any.
    /// - Throws: ``DecodeFailure`` when it is required and absent, or not a valid address.
    public static func address(_ text: String?, path: String, required: Bool) throws(DecodeFailure) -> EmailAddress? {
        guard let text else {
            if required { throw DecodeFailure(.schemaViolation, "\(path) is required") }
            return nil
        }
        guard let email = EmailAddress(text) else { throw DecodeFailure(.schemaViolation, "\(path) is not a valid email address") }
        return email
    }
}

extension Array where Element: Hashable {
    /// The elements without repeats, first occurrence kept, in linear time.
    public func uniqued() -> [Element] {
        var seen = Set<Element>(minimumCapacity: count)
        return filter { seen.insert($0).inserted }
    }
}

extension Unicode.Scalar {
    /// A control character (C0, DEL, C1) or a bidirectional control (U+061C, U+200E–U+200F, U+202A–U+202E,
    /// U+2066–U+2069), which can reorder what a reader sees.
    public var isControlOrBidi: Bool {
        switch value {
        case 0..<0x20, 0x7F...0x9F, 0x061C, 0x200E...0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}

extension String {
    /// The string in Unicode Normalization Form C. ASCII, which most ids are, is already NFC and is returned as is.
    public var nfc: String {
        utf8.allSatisfy { $0 < 0x80 } ? self : precomposedStringWithCanonicalMapping
    }
}
