/// An email address as the contract reads it: trimmed, lowercased (domain and local part), and checked — RFC 5321
/// length limits (64-octet local part, 255-octet domain, 254 in all), exactly one `@`, a dotted domain, no spaces or
/// control characters.
public struct EmailAddress: Hashable, Sendable, CustomStringConvertible {
    /// The normalised address.
    public let value: String

    /// Normalises `text`; `nil` when it is not an address the contract accepts.
    public init?(_ text: String) {
        let trimmed = text.trimmingWhitespace().lowercased().nfc
        let utf8 = Array(trimmed.utf8)
        guard utf8.count <= 254, !trimmed.unicodeScalars.contains(where: \.isControlOrBidi), utf8.filter({ $0 == UInt8(ascii: "@") }).count == 1,
            let at = utf8.firstIndex(of: UInt8(ascii: "@"))
        else { return nil }
        let local = utf8[..<at]
        let domain = utf8[(at + 1)...]
        guard (1...64).contains(local.count), (1...255).contains(domain.count),
            !utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }),
            domain.contains(UInt8(ascii: ".")), domain.first != UInt8(ascii: "."), domain.last != UInt8(ascii: "."),
            !domain.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).contains(where: \.isEmpty)
        else { return nil }
        value = trimmed
    }

    /// The address with its local part masked, for logs and explanations (`j***@example.com`).
    public var redacted: String {
        guard let at = value.firstIndex(of: "@") else { return "***" }
        return String(value.prefix(1)) + "***" + value[at...]
    }

    public var description: String { redacted }
}

extension String {
    /// The string without leading and trailing whitespace and newlines.
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
