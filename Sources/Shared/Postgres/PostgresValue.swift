import Foundation

/// A Swift value sent as a statement parameter, in PostgreSQL's text format. Values never become SQL text:
/// they travel beside the statement (`$1`, `$2`, …).
public protocol PostgresBindable: Sendable {
    /// The text PostgreSQL parses for this value.
    var postgresText: String { get }
}

/// A Swift value read from a result column's text.
public protocol PostgresDecodable {
    /// Parses the column's text; `nil` when it is not a valid value of this type.
    init?(postgresText: String)
}

extension String: PostgresBindable, PostgresDecodable {
    public var postgresText: String { self }
    public init?(postgresText: String) { self = postgresText }
}

extension Int: PostgresBindable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int32: PostgresBindable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int64: PostgresBindable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Double: PostgresBindable, PostgresDecodable {
    public var postgresText: String { description }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Bool: PostgresBindable, PostgresDecodable {
    public var postgresText: String { self ? "t" : "f" }
    public init?(postgresText: String) {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: return nil
        }
    }
}

extension Date: PostgresBindable, PostgresDecodable {
    private static let secondsStyle = Date.ISO8601FormatStyle(timeZone: .gmt)

    /// RFC 3339 in UTC with microseconds (`2026-11-25T05:54:55.123456Z`), the precision `timestamptz` keeps.
    public var postgresText: String {
        let microseconds = (timeIntervalSince1970 * 1_000_000).rounded()
        let wholeSeconds = (microseconds / 1_000_000).rounded(.down)
        let fraction = Int(microseconds - wholeSeconds * 1_000_000)
        let base = Date(timeIntervalSince1970: wholeSeconds).formatted(Self.secondsStyle).dropLast()  // drop "Z"
        let digits = String(fraction)
        return base + "." + String(repeating: "0", count: 6 - digits.count) + digits + "Z"
    }

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

    public var postgresText: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "x")]
        text.reserveCapacity(2 + bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
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

/// Rows a query returned, read eagerly out of libpq, in text form.
public struct PostgresRows: Sendable, Sequence {
    /// The column names, in order.
    public let columns: [String]
    /// The values, row by row; `nil` is SQL `NULL`.
    public let values: [[String?]]

    /// The number of rows.
    public var count: Int { values.count }

    public func makeIterator() -> some IteratorProtocol<PostgresRow> {
        values.lazy.map { PostgresRow(columns: columns, values: $0) }.makeIterator()
    }

    /// The first row, if any.
    public var first: PostgresRow? { values.first.map { PostgresRow(columns: columns, values: $0) } }
}

/// One result row.
public struct PostgresRow: Sendable {
    let columns: [String]
    let values: [String?]

    /// The value of `column` decoded as `T`; `nil` when it is SQL `NULL`.
    /// - Throws: ``PostgresError`` with ``PostgresError/Code/decoding`` when the column is unknown or its text is not a `T`.
    public func decode<T: PostgresDecodable>(_ type: T.Type, _ column: String) throws -> T? {
        guard let index = columns.firstIndex(of: column) else {
            throw PostgresError(code: .decoding, message: "no column \(column) in the result")
        }
        return try decode(type, at: index)
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
