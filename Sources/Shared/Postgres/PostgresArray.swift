/// A one-dimensional array parameter (`$1::text[]`, `$2::bigint[]`, `$3::bytea[]`), so that a whole batch travels
/// in one statement: `INSERT … SELECT * FROM unnest($1::text[], $2::bigint[])`.
public struct PostgresArray: PostgresBindable {
    private let elements: [(any PostgresBindable)?]

    /// An array of `elements`; `nil` elements are SQL `NULL`.
    public init(_ elements: [(any PostgresBindable)?]) {
        self.elements = elements
    }

    /// An array of non-optional `elements`.
    public init<Element: PostgresBindable>(_ elements: [Element]) {
        self.elements = elements.map { $0 }
    }

    /// PostgreSQL's array literal: every element quoted, `"` and `\` escaped, `NULL` bare.
    public var postgresText: String {
        var text: [UInt8] = [UInt8(ascii: "{")]
        for (index, element) in elements.enumerated() {
            if index > 0 { text.append(UInt8(ascii: ",")) }
            guard let element else {
                text += [UInt8(ascii: "N"), UInt8(ascii: "U"), UInt8(ascii: "L"), UInt8(ascii: "L")]
                continue
            }
            text.append(UInt8(ascii: "\""))
            for byte in element.postgresText.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { text.append(UInt8(ascii: "\\")) }
                text.append(byte)
            }
            text.append(UInt8(ascii: "\""))
        }
        text.append(UInt8(ascii: "}"))
        return String(decoding: text, as: UTF8.self)
    }
}
