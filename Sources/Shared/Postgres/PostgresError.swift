/// An error from PostgreSQL or libpq, keeping the SQLSTATE and whether repeating the work may succeed.
public struct PostgresError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// No connection could be made (server down, refused, authentication). Retriable.
        public static let connectionFailed = Code(name: "connectionFailed")
        /// The connection broke during the operation (server restart, network). Retriable on a new connection.
        public static let connectionLost = Code(name: "connectionLost")
        /// The server answered with an error; see ``PostgresError/sqlState``.
        public static let server = Code(name: "server")
        /// A parameter cannot be sent (a NUL character in text). Not retriable.
        public static let invalidParameter = Code(name: "invalidParameter")
        /// A value could not be decoded to the requested Swift type. Not retriable.
        public static let decoding = Code(name: "decoding")
        /// libpq reported something Rapport did not expect. Not retriable.
        public static let unexpected = Code(name: "unexpected")
        /// The client was shut down. Not retriable.
        public static let clientClosed = Code(name: "clientClosed")
        /// Another transaction created a row this one had found missing and meant to create (a unique violation on an
        /// insert of rows the transaction allocated itself): the work read state that is no longer current and is done
        /// again, as after a serialization failure. Retriable. See ``PostgresConnection/insertNew(_:_:_:)``.
        public static let concurrentInsert = Code(name: "concurrentInsert")
    }

    /// The kind of failure.
    public let code: Code
    /// The five-character SQLSTATE the server sent, e.g. `23505`; `nil` when the failure was not the server's answer.
    public let sqlState: String?
    /// The server's or libpq's primary message. Never the statement's parameters, nor the server's DETAIL (which can
    /// quote row values, personal data among them).
    public let message: String

    /// Creates an error from its parts.
    public init(code: Code, sqlState: String? = nil, message: String) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
    }

    /// Whether the same work may succeed if repeated: connection failures, rows created concurrently
    /// (``Code/concurrentInsert``), serialization failures (`40001`),
    /// deadlocks (`40P01`), server shutdown or start-up (`57P01`–`57P03`), too many connections (`53300`).
    public var isRetriable: Bool {
        switch code {
        case .connectionFailed, .connectionLost, .concurrentInsert: return true
        case .server:
            guard let sqlState else { return false }
            return sqlState.hasPrefix("08") || Self.retriableStates.contains(sqlState)
        default: return false
        }
    }

    /// Whether the data was refused — by the server (a bad value, a constraint, a value too large for an index row:
    /// SQLSTATE classes 22, 23 and 54) or before it was sent (``Code/invalidParameter``, a NUL character): repeating
    /// the same work will fail the same way, so the message that carried it is dead-lettered rather than retried.
    public var isDataError: Bool {
        if code == .invalidParameter { return true }
        guard code == .server, let sqlState else { return false }
        return sqlState.hasPrefix("22") || sqlState.hasPrefix("23") || sqlState.hasPrefix("54")
    }

    static let retriableStates: Set<String> = ["40001", "40P01", "57P01", "57P02", "57P03", "53300", "55P03"]

    /// `unique_violation`.
    public static let uniqueViolation = "23505"

    public var description: String {
        "PostgresError(\(code)\(sqlState.map { ", SQLSTATE \($0)" } ?? "")\(isRetriable ? ", retriable" : "")): \(message)"
    }
}
