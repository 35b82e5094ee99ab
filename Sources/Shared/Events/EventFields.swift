/// Reading an event's fields the way every worker does: a missing or `null` field is absent, a wrongly typed one a
/// `schema_violation` naming its path (`properties.products[2].quantity`).
public enum EventFields {
    /// The string at `key`, if present.
    /// - Throws: ``DecodeFailure`` when it is not a string.
    public static func string(_ key: String, in object: [String: JSONValue], path: String) throws(DecodeFailure) -> String? {
        guard let value = object[key], value != .null else { return nil }
        guard let text = value.stringValue else { throw DecodeFailure(.schemaViolation, "\(path) must be a string, not a \(value.typeName)") }
        return text
    }

    /// An identifier at `key` that may be a string or an integral number (`"product_id": 42`), as text.
    /// - Throws: ``DecodeFailure`` when it is neither.
    public static func identifier(_ key: String, in object: [String: JSONValue], path: String) throws(DecodeFailure) -> String? {
        guard let value = object[key], value != .null else { return nil }
        if let text = value.stringValue { return text }
        if let number = value.numberValue, number == number.rounded(), abs(number) < 1e15 { return String(Int64(number)) }
        throw DecodeFailure(.schemaViolation, "\(path) must be a string or an integer, not a \(value.typeName)")
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
