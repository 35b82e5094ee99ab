import CLibPQ
import Foundation

/// One libpq connection: the only type in Rapport that calls libpq.
///
/// Every method blocks and must run on the connection's own ``queue``; ``PostgresClient`` lends a connection to one
/// unit of work at a time and runs that work there. `@unchecked Sendable` is sound because of that discipline: a
/// `PGconn` is never touched by two threads at once.
public final class PostgresConnection: @unchecked Sendable {
    /// The queue on which this connection's work runs.
    let queue: BlockingQueue
    private let connection: OpaquePointer
    /// Prepared statement names by SQL text.
    private var prepared: [String: String] = [:]
    /// Set when the connection was left in a state it cannot be reused from (a pipeline cut short).
    private var isPoisoned = false

    private init(connection: OpaquePointer, queue: BlockingQueue) {
        self.connection = connection
        self.queue = queue
    }

    deinit {
        PQfinish(connection)
    }

    /// Opens a connection. Blocks: call it on the connection's future queue.
    /// - Throws: ``PostgresError`` with ``PostgresError/Code/connectionFailed``.
    static func connect(_ configuration: PostgresConfiguration, queue: BlockingQueue) throws -> PostgresConnection {
        // NULL-terminated, as PQconnectdbParams requires.
        let keywords: [String?] = ["dbname", "fallback_application_name", "connect_timeout", nil]
        let values: [String?] = [configuration.url, configuration.applicationName, String(max(1, configuration.connectTimeout.components.seconds)), nil]
        let (keywordList, valueList) = (try EncodedParameters(keywords), try EncodedParameters(values))
        let pointer = keywordList.withPointers { keywordPointers in
            valueList.withPointers { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let pointer else { throw PostgresError(code: .connectionFailed, message: "libpq could not allocate a connection") }
        guard PQstatus(pointer) == CONNECTION_OK else {
            let message = Self.libpqMessage(pointer)
            PQfinish(pointer)
            throw PostgresError(code: .connectionFailed, message: message)
        }
        let connection = PostgresConnection(connection: pointer, queue: queue)
        // Timestamps are read back in one unambiguous form whatever the server's defaults.
        try connection.query("SET TIME ZONE 'UTC'")
        try connection.query("SET DateStyle = 'ISO, YMD'")
        return connection
    }

    /// Whether the connection can no longer be used: the server closed it, or it was left mid-protocol.
    public var isBroken: Bool { isPoisoned || PQstatus(connection) != CONNECTION_OK }

    /// Runs one statement, its interpolated values sent apart from its text as `$1…$n`.
    /// - Returns: The rows it returned (none for a command).
    /// - Throws: ``PostgresError``.
    @discardableResult
    public func query(_ query: PostgresQuery) throws -> PostgresRows {
        try self.query(query.sql, query.binds)
    }

    /// Runs one command built as a ``PostgresQuery`` and returns how many rows it affected.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public func execute(_ query: PostgresQuery) throws -> Int {
        try execute(query.sql, query.binds)
    }

    /// ``insertNew(_:_:_:)`` for a statement built as a ``PostgresQuery``.
    @discardableResult
    public func insertNew(_ what: String, _ query: PostgresQuery) throws -> Int {
        try insertNew(what, query.sql, query.binds)
    }

    /// Runs one statement with its parameters sent apart from its text (`$1`, `$2`, …). Prefer the ``PostgresQuery``
    /// form, which numbers the parameters itself.
    /// - Parameters:
    ///   - sql: The statement.
    ///   - parameters: Values for `$1…$n`; `nil` is SQL `NULL`.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresBindable)?]) throws -> PostgresRows {
        let encoded = try EncodedParameters(parameters)
        let result = encoded.withPointers { pointers in
            PQexecParams(connection, sql, Int32(encoded.count), nil, pointers, nil, nil, 0)
        }
        return try rows(of: result)
    }

    /// Runs SQL text holding one or more statements and no parameters (a migration file) through the simple query
    /// protocol. Never pass it text built from input: it has no parameters for a reason.
    /// - Throws: ``PostgresError`` from the first statement that fails.
    public func executeScript(_ sql: String) throws {
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        try check(result)
    }

    /// Runs one command and returns how many rows it affected.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [(any PostgresBindable)?]) throws -> Int {
        let encoded = try EncodedParameters(parameters)
        let result = encoded.withPointers { pointers in
            PQexecParams(connection, sql, Int32(encoded.count), nil, pointers, nil, nil, 0)
        }
        defer { PQclear(result) }
        try check(result)
        return Int(String(cString: PQcmdTuples(result))) ?? 0
    }

    /// Runs `sql`, an `INSERT` of rows whose unique keys this transaction looked up and found missing, as a plain
    /// insert: no `ON CONFLICT`, whose speculative insertion costs about half as much again per row (measured: 2,000
    /// identities in 16–22 ms against 10–11). Should another transaction have created one of those keys meanwhile, the
    /// unique violation is reported as ``PostgresError/Code/concurrentInsert`` — retriable: the transaction is
    /// aborted and its work done again over the current state, which then has the other transaction's row.
    /// - Parameter what: The rows, for the error's message (`"identities"`).
    /// - Returns: The number of rows inserted.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public func insertNew(_ what: String, _ sql: String, _ parameters: [(any PostgresBindable)?]) throws -> Int {
        try Self.reportingConcurrentInsert(of: what) { try execute(sql, parameters) }
    }

    /// ``insertNew(_:_:_:)`` for a statement that returns rows: a function that inserts what it found missing
    /// (`rapport_resolve_shoppers`), an `INSERT … RETURNING`.
    public func queryInsertingNew(_ what: String, _ query: PostgresQuery) throws -> PostgresRows {
        try Self.reportingConcurrentInsert(of: what) { try self.query(query) }
    }

    /// `work`, its unique violation reported as the retriable ``PostgresError/Code/concurrentInsert``.
    private static func reportingConcurrentInsert<T>(of what: String, _ work: () throws -> T) throws -> T {
        do {
            return try work()
        } catch let error as PostgresError where error.sqlState == PostgresError.uniqueViolation {
            throw PostgresError(code: .concurrentInsert, message: "another transaction created some of these \(what) meanwhile: \(error.message)")
        }
    }

    /// Runs one prepared statement once per parameter row through libpq's pipeline mode: statements are sent without
    /// waiting for each answer, with a Sync every `syncEvery` rows. Inside a transaction a failure aborts the
    /// transaction; outside one, each Sync commits the rows before it.
    ///
    /// - Returns: The total number of rows affected.
    /// - Throws: ``PostgresError``: the first statement's error when one fails.
    @discardableResult
    public func executeBatch(_ sql: String, _ rows: [[(any PostgresBindable)?]], syncEvery: Int = 1000) throws -> Int {
        guard !rows.isEmpty else { return 0 }
        // Encode every row first: a bad parameter must fail the batch before anything is sent.
        let encoded = try rows.map { try EncodedParameters($0) }
        let name = try preparedName(for: sql)
        guard PQenterPipelineMode(connection) == 1 else { throw failure() }
        var affected = 0
        var firstError: PostgresError?
        var start = 0
        while start < encoded.count {
            let end = min(start + max(1, syncEvery), encoded.count)
            for parameters in encoded[start..<end] {
                let sent = parameters.withPointers { pointers in
                    PQsendQueryPrepared(connection, name, Int32(parameters.count), pointers, nil, nil, 0)
                }
                guard sent == 1 else {
                    isPoisoned = true
                    throw failure()
                }
            }
            guard PQpipelineSync(connection) == 1 else {
                isPoisoned = true
                throw failure()
            }
            try drainPipeline(affected: &affected, firstError: &firstError)
            if firstError != nil { break }
            start = end
        }
        guard PQexitPipelineMode(connection) == 1 else {
            isPoisoned = true
            throw failure()
        }
        if let firstError { throw firstError }
        return affected
    }

    /// Reads one Sync's worth of pipeline results.
    private func drainPipeline(affected: inout Int, firstError: inout PostgresError?) throws {
        var consecutiveEnds = 0
        while true {
            guard let result = PQgetResult(connection) else {
                consecutiveEnds += 1
                if PQstatus(connection) != CONNECTION_OK || consecutiveEnds > 1 {
                    isPoisoned = true
                    throw failure()
                }
                continue
            }
            consecutiveEnds = 0
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_PIPELINE_SYNC:
                return
            case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
                affected += Int(String(cString: PQcmdTuples(result))) ?? 0
            case PGRES_PIPELINE_ABORTED:
                break
            default:
                if firstError == nil { firstError = error(of: result) }
            }
        }
    }

    /// Loads `rows` into `table` with `COPY … FROM STDIN` (text format): the fastest way into PostgreSQL.
    ///
    /// - Parameters:
    ///   - table: The table, optionally schema-qualified; quoted as an identifier.
    ///   - columns: The columns the rows' values go to, in order; quoted as identifiers.
    ///   - rows: The values; `nil` is SQL `NULL`.
    /// - Returns: The number of rows copied.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public func copy(into table: String, columns: [String], rows: [[(any PostgresBindable)?]]) throws -> Int {
        let target = table.split(separator: ".").map { Self.quoteIdentifier(String($0)) }.joined(separator: ".")
        let sql = "COPY \(target) (\(columns.map(Self.quoteIdentifier).joined(separator: ", "))) FROM STDIN"
        let start = PQexec(connection, sql)
        guard PQresultStatus(start) == PGRES_COPY_IN else {
            defer { PQclear(start) }
            throw error(of: start)
        }
        PQclear(start)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 18)
        var encodingError: PostgresError?
        var text: [UInt8] = []
        rowLoop: for row in rows {
            for (index, value) in row.enumerated() {
                if index > 0 { buffer.append(UInt8(ascii: "\t")) }
                guard let value else {
                    buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")])
                    continue
                }
                text.removeAll(keepingCapacity: true)
                value.appendPostgresText(to: &text)
                for byte in text {
                    switch byte {
                    case 0:
                        encodingError = PostgresError(code: .invalidParameter, message: "column \(columns[index]) contains a NUL character")
                        break rowLoop
                    case UInt8(ascii: "\\"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                    case UInt8(ascii: "\t"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                    case UInt8(ascii: "\n"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                    case UInt8(ascii: "\r"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                    default: buffer.append(byte)
                    }
                }
            }
            buffer.append(UInt8(ascii: "\n"))
            if buffer.count >= 1 << 18 {
                try putCopyData(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        if encodingError == nil, !buffer.isEmpty { try putCopyData(buffer) }
        guard PQputCopyEnd(connection, encodingError?.message) == 1 else {
            isPoisoned = true
            throw failure()
        }
        var copied = 0
        var firstError: PostgresError?
        while let result = PQgetResult(connection) {
            if PQresultStatus(result) == PGRES_COMMAND_OK {
                copied = Int(String(cString: PQcmdTuples(result))) ?? 0
            } else if firstError == nil {
                firstError = error(of: result)
            }
            PQclear(result)
        }
        if let encodingError { throw encodingError }
        if let firstError { throw firstError }
        return copied
    }

    private func putCopyData(_ bytes: [UInt8]) throws {
        let sent = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { PQputCopyData(connection, $0.baseAddress, Int32(buffer.count)) }
        }
        guard sent == 1 else {
            isPoisoned = true
            throw failure()
        }
    }

    /// Runs `body` inside `BEGIN … COMMIT`, rolling back when it throws.
    /// - Throws: What `body` throws, or ``PostgresError`` from BEGIN or COMMIT.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try query("BEGIN")
        let value: T
        do {
            value = try body()
        } catch {
            if !isBroken { _ = try? query("ROLLBACK") }
            throw error
        }
        try query("COMMIT")
        return value
    }

    // MARK: - Results and errors

    private func preparedName(for sql: String) throws -> String {
        if let name = prepared[sql] { return name }
        let name = "rapport_\(prepared.count + 1)"
        let result = PQprepare(connection, name, sql, 0, nil)
        defer { PQclear(result) }
        try check(result)
        prepared[sql] = name
        return name
    }

    private func rows(of result: OpaquePointer?) throws -> PostgresRows {
        defer { PQclear(result) }
        try check(result)
        guard let result else { return PostgresRows(columns: [], values: []) }
        let columnCount = PQnfields(result)
        let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
        let values = (0..<PQntuples(result)).map { row in
            (0..<columnCount).map { column -> String? in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            }
        }
        return PostgresRows(columns: columns, values: values)
    }

    private func check(_ result: OpaquePointer?) throws {
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY: return
        default: throw error(of: result)
        }
    }

    /// The error a failed result carries, or the connection's when there is no result.
    private func error(of result: OpaquePointer?) -> PostgresError {
        guard let result, let state = PQresultErrorField(result, Self.sqlStateField) else { return failure() }
        let sqlState = String(cString: state)
        let primary = PQresultErrorField(result, Self.primaryMessageField).map { String(cString: $0) } ?? "error"
        if PQstatus(connection) != CONNECTION_OK {
            return PostgresError(code: .connectionLost, sqlState: sqlState, message: primary)
        }
        return PostgresError(code: .server, sqlState: sqlState, message: primary)
    }

    /// The connection's own error (no server answer): lost when the connection is down, else unexpected.
    private func failure() -> PostgresError {
        let message = Self.libpqMessage(connection)
        if PQstatus(connection) != CONNECTION_OK {
            return PostgresError(code: .connectionLost, message: message)
        }
        return PostgresError(code: .unexpected, message: message)
    }

    private static let sqlStateField = Int32(UInt8(ascii: "C"))
    private static let primaryMessageField = Int32(UInt8(ascii: "M"))

    private static func libpqMessage(_ connection: OpaquePointer) -> String {
        String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "\n", with: "; ")
    }

    /// Quotes an identifier (`"name"`, doubling any quote inside).
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Quotes a string literal (`'text'`, doubling any quote inside), for scripts that cannot take parameters
    /// (`executeScript`); a statement with values takes them as parameters.
    public static func quoteLiteral(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}

/// Statement parameters in libpq's text format: every value's text, NUL-terminated, in one buffer.
struct EncodedParameters {
    private var buffer: [UInt8] = []
    private var offsets: [Int?] = []

    /// Encodes `parameters`, refusing text PostgreSQL cannot hold.
    /// - Throws: ``PostgresError`` (``PostgresError/Code/invalidParameter``) naming the parameter that holds a NUL.
    init(_ parameters: [(any PostgresBindable)?]) throws {
        offsets.reserveCapacity(parameters.count)
        for (index, parameter) in parameters.enumerated() {
            guard let parameter else {
                offsets.append(nil)
                continue
            }
            let start = buffer.count
            parameter.appendPostgresText(to: &buffer)
            if buffer[start...].contains(0) {
                throw PostgresError(code: .invalidParameter, message: "parameter $\(index + 1) contains a NUL character, which PostgreSQL text cannot hold")
            }
            buffer.append(0)
            offsets.append(start)
        }
    }

    /// How many parameters there are.
    var count: Int { offsets.count }

    /// Calls `body` with one C string per parameter (a null pointer for SQL `NULL`), valid during the call.
    func withPointers<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
        buffer.withUnsafeBytes { raw in
            let base = raw.bindMemory(to: CChar.self).baseAddress
            let pointers: [UnsafePointer<CChar>?] = offsets.map { offset in
                guard let offset, let base else { return nil }
                return UnsafePointer(base + offset)
            }
            return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}
