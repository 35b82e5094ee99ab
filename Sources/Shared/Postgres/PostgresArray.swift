/// A one-dimensional array parameter (`$1::text[]`, `$2::bigint[]`, `$3::bytea[]`), so that a whole batch travels
/// in one statement: `INSERT … SELECT * FROM unnest($1::text[], $2::bigint[])`.
public struct PostgresArray: PostgresBindable {
    private let elements: [(any PostgresBindable)?]

    /// An array of `elements`; `nil` elements are SQL `NULL`.
    public init(_ elements: [(any PostgresBindable)?]) {
        self.elements = elements
    }

    /// An array of `elements`; `nil` elements are SQL `NULL`.
    public init<Element: PostgresBindable>(_ elements: [Element?]) {
        self.elements = elements.map { $0 }
    }

    /// An array of non-optional `elements`.
    public init<Element: PostgresBindable>(_ elements: [Element]) {
        self.elements = elements.map { $0 }
    }

    /// PostgreSQL's array literal: every element quoted (`"` and `\` escaped) or bare where its text needs no quotes
    /// (numbers, dates), `NULL` bare.
    public func appendPostgresText(to text: inout [UInt8]) {
        text.append(UInt8(ascii: "{"))
        for (index, element) in elements.enumerated() {
            if index > 0 { text.append(UInt8(ascii: ",")) }
            if let element {
                element.appendPostgresArrayElement(to: &text)
            } else {
                text.append(contentsOf: [UInt8(ascii: "N"), UInt8(ascii: "U"), UInt8(ascii: "L"), UInt8(ascii: "L")])
            }
        }
        text.append(UInt8(ascii: "}"))
    }
}
