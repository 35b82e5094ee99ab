import Foundation

/// A statement and its parameters, written as one string: every interpolated value becomes the next `$n` and travels
/// beside the text, never inside it (postgres-nio's `PostgresQuery`).
///
/// ```swift
/// try connection.query("SELECT email FROM capture_shoppers WHERE store_id = \(store) AND shopper_id = \(id)")
/// ```
///
/// Only constant text becomes SQL: literals, `StaticString` fragments (`\(sql: "ORDER BY id")`) and other queries
/// (whose parameters are renumbered). A `String` from anywhere else can only ever be a parameter.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation {
    /// The statement, with `$1…$n` where the values go.
    public private(set) var sql: String
    /// The values of `$1…$n`; `nil` is SQL `NULL`.
    public private(set) var binds: [(any PostgresBindable)?]

    public init(stringLiteral value: StaticString) {
        sql = value.description
        binds = []
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        binds = stringInterpolation.binds
    }

    /// SQL text that was not written in the source: a migration's statement, a plan test's query read from a list.
    /// Never text built from input.
    public init(unsafeSQL sql: String, binds: [(any PostgresBindable)?] = []) {
        self.sql = sql
        self.binds = binds
    }

    public struct StringInterpolation: StringInterpolationProtocol, Sendable {
        var sql: String
        var binds: [(any PostgresBindable)?]

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql = ""
            sql.reserveCapacity(literalCapacity + 4 * interpolationCount)
            binds = []
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: StaticString) {
            sql += literal.description
        }

        /// A value, as the next parameter.
        public mutating func appendInterpolation(_ value: some PostgresBindable) {
            binds.append(value)
            sql += "$\(binds.count)"
        }

        /// A value or SQL `NULL`, as the next parameter.
        public mutating func appendInterpolation(_ value: (some PostgresBindable)?) {
            binds.append(value)
            sql += "$\(binds.count)"
        }

        /// A name chosen at run time (a database, a table), double-quoted as an identifier (`"` doubled).
        public mutating func appendInterpolation(identifier name: String) {
            sql += PostgresConnection.quoteIdentifier(name)
        }

        /// A constant fragment of SQL (a column list, an ordering).
        public mutating func appendInterpolation(sql fragment: StaticString) {
            sql += fragment.description
        }

        /// Text assembled here from `StaticString`s only (column lists).
        fileprivate mutating func appendInterpolation(unsafe text: String) {
            sql += text
        }

        /// Another query, its parameters renumbered after this one's.
        public mutating func appendInterpolation(_ query: PostgresQuery) {
            sql += query.renumbered(after: binds.count)
            binds += query.binds
        }
    }

    /// The text with `$k` as `$(k + offset)`, outside quoted literals and identifiers.
    func renumbered(after offset: Int) -> String {
        guard offset > 0, !binds.isEmpty else { return sql }
        var result = ""
        result.reserveCapacity(sql.utf8.count + binds.count)
        var quote: Character?
        var index = sql.startIndex
        while index < sql.endIndex {
            let character = sql[index]
            if let open = quote {
                if character == open { quote = nil }
                result.append(character)
                index = sql.index(after: index)
            } else if character == "'" || character == "\"" {
                quote = character
                result.append(character)
                index = sql.index(after: index)
            } else if character == "$", case let digits = sql[sql.index(after: index)...].prefix(while: \.isASCIIDigit), let number = Int(digits) {
                result += "$\(number + offset)"
                index = digits.endIndex
            } else {
                result.append(character)
                index = sql.index(after: index)
            }
        }
        return result
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// A value read from one result column: a ``PostgresDecodable`` type where the column is `NOT NULL` (SQL `NULL`
/// throws), or an `Optional` of one where it may be `NULL`.
public protocol PostgresColumnDecodable {
    /// Decodes the column's text (`nil` for SQL `NULL`).
    /// - Throws: ``PostgresError`` with ``PostgresError/Code/decoding``.
    init(postgresColumn text: String?, named column: String) throws
}

extension PostgresColumnDecodable where Self: PostgresDecodable {
    public init(postgresColumn text: String?, named column: String) throws {
        guard let text else { throw PostgresError(code: .decoding, message: "column \(column) is NULL, not a \(Self.self)") }
        guard let value = Self(postgresText: text) else { throw PostgresError(code: .decoding, message: "column \(column) is not a \(Self.self)") }
        self = value
    }
}

extension String: PostgresColumnDecodable {}
extension Int: PostgresColumnDecodable {}
extension Int32: PostgresColumnDecodable {}
extension Int64: PostgresColumnDecodable {}
extension Double: PostgresColumnDecodable {}
extension Bool: PostgresColumnDecodable {}
extension Date: PostgresColumnDecodable {}
extension PostgresBytes: PostgresColumnDecodable {}
extension JSONValue: PostgresColumnDecodable {}

extension Optional: PostgresColumnDecodable where Wrapped: PostgresColumnDecodable {
    public init(postgresColumn text: String?, named column: String) throws {
        self = try text.map { try Wrapped(postgresColumn: $0, named: column) }
    }
}

/// A `json` or `jsonb` column read straight into a value, and a value sent as one (`$1::jsonb`).
extension JSONValue: PostgresBindable, PostgresDecodable {
    public func appendPostgresText(to text: inout [UInt8]) { text += encoded() }

    public init?(postgresText: String) {
        guard let value = try? JSONValue.parse(Array(postgresText.utf8)[...]) else { return nil }
        self = value
    }
}

extension PostgresRow {
    /// The row's columns, in order, as the tuple `types` names: `row.decode((Int64, String?, Date).self)`. A
    /// non-optional element refuses SQL `NULL`; the row must have exactly that many columns.
    /// - Throws: ``PostgresError`` with ``PostgresError/Code/decoding``.
    public func decode<each T: PostgresColumnDecodable>(_ types: (repeat each T).Type) throws -> (repeat each T) {
        var position = 0
        var count = 0
        for _ in repeat (each T).self { count += 1 }
        guard count == values.count else {
            throw PostgresError(code: .decoding, message: "the row has \(values.count) columns, not \(count)")
        }
        func next<Column: PostgresColumnDecodable>(_: Column.Type) throws -> Column {
            defer { position += 1 }
            return try Column(postgresColumn: values[position], named: index.names[position])
        }
        return (repeat try next((each T).self))
    }

    /// The column named `column` as `T` (an `Optional` where it may be `NULL`).
    /// - Throws: ``PostgresError`` with ``PostgresError/Code/decoding`` when there is no such column or its value is no `T`.
    public func decode<T: PostgresColumnDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard let position = index.positions[column] else { throw PostgresError(code: .decoding, message: "no column \(column) in the result") }
        return try T(postgresColumn: values[position], named: column)
    }
}

extension PostgresRow {
    /// The row's one column as `T`: `row.decode(Int64.self)`.
    /// - Throws: ``PostgresError`` with ``PostgresError/Code/decoding``.
    public func decode<T: PostgresColumnDecodable>(_ type: T.Type) throws -> T {
        guard values.count == 1 else { throw PostgresError(code: .decoding, message: "the row has \(values.count) columns, not 1") }
        return try T(postgresColumn: values[0], named: index.names[0])
    }
}

extension PostgresRows {
    /// Every row's one column as `T`.
    public func decode<T: PostgresColumnDecodable>(_ type: T.Type) throws -> [T] {
        try map { try $0.decode(type) }
    }

    /// Every row as the tuple `types` names (``PostgresRow/decode(_:)-(repeat_each_T).Type``).
    public func decode<each T: PostgresColumnDecodable>(_ types: (repeat each T).Type) throws -> [(repeat each T)] {
        try map { try $0.decode(types) }
    }
}

/// One column of a set-based insert: its name, its PostgreSQL type and how a row gives its value. A batch's rows
/// travel as one array per column (`unnest($1::text[], $2::bigint[], …)`), so a statement's size does not depend on
/// how many rows it writes.
public struct PostgresColumn<Row> {
    let name: StaticString
    let type: StaticString
    let values: ([Row]) -> PostgresArray

    /// A column whose value is never `NULL`.
    public init<Value: PostgresBindable>(_ name: StaticString, _ type: StaticString, _ value: @escaping (Row) -> Value) {
        self.name = name
        self.type = type
        values = { rows in PostgresArray(rows.map(value)) }
    }

    /// A column whose value may be `NULL`.
    public init<Value: PostgresBindable>(_ name: StaticString, _ type: StaticString, _ value: @escaping (Row) -> Value?) {
        self.name = name
        self.type = type
        values = { rows in PostgresArray(rows.map(value)) }
    }
}

extension PostgresQuery {
    /// `unnest($1::type[], …) AS alias(c…)`: the rows as a set, one array parameter per column, to join or select from.
    public static func unnest<Row>(_ rows: [Row], _ columns: [PostgresColumn<Row>], as alias: StaticString = "u") -> PostgresQuery {
        var sql = "unnest("
        var binds: [(any PostgresBindable)?] = []
        for (index, column) in columns.enumerated() {
            binds.append(column.values(rows))
            sql += "\(index == 0 ? "" : ", ")$\(binds.count)::\(column.type)[]"
        }
        sql += ") AS \(alias)(\(names(columns)))"
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    /// `c = alias.c, …` for each of `columns`: an `UPDATE … FROM unnest(…)`'s `SET` list.
    public static func assignments<Row>(_ columns: [PostgresColumn<Row>], from alias: StaticString = "u") -> PostgresQuery {
        PostgresQuery(unsafeSQL: columns.map { "\($0.name) = \(alias).\($0.name)" }.joined(separator: ", "))
    }

    /// `INSERT INTO table AS t (c…) SELECT c… FROM unnest($1::type[], …) AS u(c…)`, each column named once, followed
    /// by `then` (an `ON CONFLICT` clause, a `RETURNING` list). `overridingSystemValue` writes identity columns the
    /// caller allocated itself.
    public static func insert<Row>(
        into table: StaticString, as alias: StaticString = "t", _ rows: [Row], _ columns: [PostgresColumn<Row>], overridingSystemValue: Bool = false,
        then suffix: PostgresQuery = ""
    ) -> PostgresQuery {
        let names = names(columns)
        let overriding: PostgresQuery = overridingSystemValue ? " OVERRIDING SYSTEM VALUE" : ""
        return "INSERT INTO \(sql: table) AS \(sql: alias) (\(unsafe: names))\(overriding) SELECT \(unsafe: names) FROM \(unnest(rows, columns)) \(suffix)"
    }

    private static func names<Row>(_ columns: [PostgresColumn<Row>]) -> String {
        columns.map(\.name.description).joined(separator: ", ")
    }

    /// The clause that makes ``insert(into:as:_:_:then:)`` an upsert: `ON CONFLICT (keys) DO UPDATE SET c = EXCLUDED.c`
    /// for each of `columns`, then `also` (further assignments, such as `updated_at = now()`).
    public static func onConflict<Row>(_ keys: [StaticString], update columns: [PostgresColumn<Row>], also: StaticString? = nil) -> PostgresQuery {
        var assignments = columns.map { "\($0.name) = EXCLUDED.\($0.name)" }
        if let also { assignments.append(also.description) }
        return PostgresQuery(
            unsafeSQL: "ON CONFLICT (\(keys.map(\.description).joined(separator: ", "))) DO UPDATE SET \(assignments.joined(separator: ", "))")
    }
}
