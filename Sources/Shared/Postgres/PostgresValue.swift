import Foundation

/// A Swift value sent as a statement parameter, in PostgreSQL's text format. Values never become SQL text:
/// they travel beside the statement (`$1`, `$2`, …).
public protocol PostgresBindable: Sendable {
    /// Appends the text PostgreSQL parses for this value (UTF-8, no terminator). Writing into the caller's buffer
    /// keeps a batch's parameters in one allocation: a 2,000-row array parameter is encoded per row.
    func appendPostgresText(to text: inout [UInt8])

    /// Appends this value as an element of an array literal (`"…"` with `"` and `\` escaped). The default quotes and
    /// escapes ``appendPostgresText(to:)``'s output; a type whose text needs no escaping may write it directly.
    func appendPostgresArrayElement(to text: inout [UInt8])
}

extension PostgresBindable {
    /// The text PostgreSQL parses for this value.
    public var postgresText: String {
        var text: [UInt8] = []
        appendPostgresText(to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    public func appendPostgresArrayElement(to text: inout [UInt8]) {
        text.append(UInt8(ascii: "\""))
        let start = text.count
        appendPostgresText(to: &text)
        if text[start...].contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            let raw = Array(text[start...])
            text.removeSubrange(start...)
            for byte in raw {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { text.append(UInt8(ascii: "\\")) }
                text.append(byte)
            }
        }
        text.append(UInt8(ascii: "\""))
    }
}

/// A Swift value read from a result column's text.
public protocol PostgresDecodable {
    /// Parses the column's text; `nil` when it is not a valid value of this type.
    init?(postgresText: String)
}

extension String: PostgresBindable, PostgresDecodable {
    public func appendPostgresText(to text: inout [UInt8]) { text.append(contentsOf: utf8) }
    public init?(postgresText: String) { self = postgresText }
}

extension FixedWidthInteger {
    /// Appends the decimal digits without building a `String`.
    func appendDecimal(to text: inout [UInt8]) {
        guard self != 0 else {
            text.append(UInt8(ascii: "0"))
            return
        }
        if Self.isSigned, self < 0 { text.append(UInt8(ascii: "-")) }
        let start = text.count
        var value = self
        while value != 0 {
            let (quotient, remainder) = value.quotientAndRemainder(dividingBy: 10)
            text.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: remainder.magnitude))
            value = quotient
        }
        text[start...].reverse()
    }
}

extension Int: PostgresBindable, PostgresDecodable {
    public func appendPostgresText(to text: inout [UInt8]) { appendDecimal(to: &text) }
    public func appendPostgresArrayElement(to text: inout [UInt8]) { appendDecimal(to: &text) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int32: PostgresBindable, PostgresDecodable {
    public func appendPostgresText(to text: inout [UInt8]) { appendDecimal(to: &text) }
    public func appendPostgresArrayElement(to text: inout [UInt8]) { appendDecimal(to: &text) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int64: PostgresBindable, PostgresDecodable {
    public func appendPostgresText(to text: inout [UInt8]) { appendDecimal(to: &text) }
    public func appendPostgresArrayElement(to text: inout [UInt8]) { appendDecimal(to: &text) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Double: PostgresBindable, PostgresDecodable {
    public func appendPostgresText(to text: inout [UInt8]) { text.append(contentsOf: description.utf8) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Bool: PostgresBindable, PostgresDecodable {
    public func appendPostgresText(to text: inout [UInt8]) { text.append(self ? UInt8(ascii: "t") : UInt8(ascii: "f")) }
    public init?(postgresText: String) {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: return nil
        }
    }
}

extension Date: PostgresBindable, PostgresDecodable {
    /// RFC 3339 in UTC with microseconds (`2026-11-25T05:54:55.123456Z`), the precision `timestamptz` keeps.
    public func appendPostgresText(to text: inout [UInt8]) { appendRFC3339(to: &text, fractionDigits: 6) }
    public func appendPostgresArrayElement(to text: inout [UInt8]) { appendRFC3339(to: &text, fractionDigits: 6) }

    /// Parses `timestamptz` output in the ISO date style (`2026-11-25 05:54:55.123456+00`), to the microsecond.
    public init?(postgresText: String) {
        // The session's zone is UTC, written `+00`; RFC 3339 wants `+00:00`.
        var text = postgresText
        if let sign = text.lastIndex(where: { $0 == "+" || $0 == "-" }), text.distance(from: text.startIndex, to: sign) > 10,
            text.distance(from: sign, to: text.endIndex) == 3
        {
            text += ":00"
        }
        self.init(rfc3339: text)
    }
}

/// Bytes, sent and read as `bytea` in hex form.
public struct PostgresBytes: PostgresBindable, PostgresDecodable, Equatable {
    /// The bytes.
    public var bytes: [UInt8]

    /// Wraps `bytes`.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// `\\x` and two hexadecimal digits per byte.
    public func appendPostgresText(to text: inout [UInt8]) {
        text.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "x")])
        appendHexDigits(to: &text)
    }

    /// `"\\\\x…"`: only the backslash needs escaping, so the digits are written once, straight into the array.
    public func appendPostgresArrayElement(to text: inout [UInt8]) {
        text.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "\\"), UInt8(ascii: "x")])
        appendHexDigits(to: &text)
        text.append(UInt8(ascii: "\""))
    }

    /// Grows `text` by appending (which doubles its capacity as needed) and fills the digits in place. Not
    /// `reserveCapacity(text.count + …)`: that allocates exactly what is asked, so an array literal of n values was
    /// copied whole n times — 384 ms instead of 10 for 1,500 values of 2.5 kB (the outbox's commands of one batch).
    private func appendHexDigits(to text: inout [UInt8]) {
        let start = text.count
        text.append(contentsOf: repeatElement(0, count: bytes.count * 2))
        text.withUnsafeMutableBufferPointer { digits in
            var index = start
            for byte in bytes {
                digits[index] = hexDigit(byte >> 4)
                digits[index + 1] = hexDigit(byte & 0x0F)
                index += 2
            }
        }
    }

    public init?(postgresText: String) {
        let utf8 = Array(postgresText.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((utf8.count - 2) / 2)
        var index = 2
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        self.bytes = bytes
    }
}

/// A result's column names and each one's position, built once and shared by its rows: a row decoded by name looks
/// its column up in a dictionary, not along the list.
final class PostgresColumnIndex: Sendable {
    let names: [String]
    let positions: [String: Int]

    init(_ names: [String]) {
        self.names = names
        positions = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
    }
}

/// Rows a query returned, read eagerly out of libpq, in text form.
public struct PostgresRows: Sendable, Sequence {
    let index: PostgresColumnIndex
    /// The values, row by row; `nil` is SQL `NULL`.
    public let values: [[String?]]

    init(columns: [String], values: [[String?]]) {
        index = PostgresColumnIndex(columns)
        self.values = values
    }

    /// The column names, in order.
    public var columns: [String] { index.names }

    /// The number of rows.
    public var count: Int { values.count }

    public func makeIterator() -> some IteratorProtocol<PostgresRow> {
        values.lazy.map { [index] in PostgresRow(index: index, values: $0) }.makeIterator()
    }

    /// The first row, if any.
    public var first: PostgresRow? { values.first.map { PostgresRow(index: index, values: $0) } }
}

/// One result row.
public struct PostgresRow: Sendable {
    let index: PostgresColumnIndex
    let values: [String?]

    init(index: PostgresColumnIndex, values: [String?]) {
        self.index = index
        self.values = values
    }

    init(columns: [String], values: [String?]) {
        self.init(index: PostgresColumnIndex(columns), values: values)
    }

    var columns: [String] { index.names }

    /// The value of `column` decoded as `T`; `nil` when it is SQL `NULL`.
    /// - Throws: ``PostgresError`` with ``PostgresError/Code/decoding`` when the column is unknown or its text is not a `T`.
    public func decode<T: PostgresDecodable>(_ type: T.Type, _ column: String) throws -> T? {
        guard let position = index.positions[column] else {
            throw PostgresError(code: .decoding, message: "no column \(column) in the result")
        }
        return try decode(type, at: position)
    }

    /// The value at `index` decoded as `T`; `nil` when it is SQL `NULL`.
    /// - Throws: ``PostgresError`` with ``PostgresError/Code/decoding``.
    public func decode<T: PostgresDecodable>(_ type: T.Type, at index: Int) throws -> T? {
        guard values.indices.contains(index) else {
            throw PostgresError(code: .decoding, message: "no column \(index) in the result")
        }
        guard let text = values[index] else { return nil }
        guard let value = T(postgresText: text) else {
            throw PostgresError(code: .decoding, message: "column \(columns[index]) is not a \(T.self)")
        }
        return value
    }
}
