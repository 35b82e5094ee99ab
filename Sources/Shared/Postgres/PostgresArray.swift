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
        var text = "{"
        for (index, element) in elements.enumerated() {
            if index > 0 { text += "," }
            guard let element else {
                text += "NULL"
                continue
            }
            text += "\""
            for character in element.postgresText.unicodeScalars {
                if character == "\"" || character == "\\" { text += "\\" }
                text.unicodeScalars.append(character)
            }
            text += "\""
        }
        return text + "}"
    }
}
