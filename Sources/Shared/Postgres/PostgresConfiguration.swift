/// How to reach PostgreSQL and how many connections to keep.
public struct PostgresConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// A libpq connection URI or key/value string (`postgresql://user@host:5432/rapport?sslmode=require`); it may
    /// carry a password, so it is never logged. Default: `postgresql://localhost:5432/rapport`.
    public var url: String = "postgresql://localhost:5432/rapport"
    /// The most connections the pool opens. Default: 4.
    public var poolSize: Int = 4
    /// The name the server shows in `pg_stat_activity`, unless the URI names one. Default: `"rapport"`.
    public var applicationName: String = "rapport"
    /// How long to wait for a connection to open. Default: 10 s.
    public var connectTimeout: Duration = .seconds(10)

    /// A configuration with every default.
    public init() {}

    /// A configuration for `url` with every other default.
    public init(url: String) {
        self.url = url
    }

    /// This configuration pointed at another database of the same server (URI or key/value form).
    public func replacingDatabase(with database: String) -> PostgresConfiguration {
        var copy = self
        guard let scheme = url.range(of: "://") else {
            copy.url = url + " dbname=\(database)"
            return copy
        }
        let rest = url[scheme.upperBound...]
        let queryStart = rest.firstIndex(of: "?") ?? url.endIndex
        let pathStart = rest[..<queryStart].firstIndex(of: "/") ?? queryStart
        copy.url = String(url[..<pathStart]) + "/" + database + String(url[queryStart...])
        return copy
    }

    /// Leaves the URL out: it may hold a password.
    public var description: String {
        "PostgresConfiguration(poolSize: \(poolSize), applicationName: \(applicationName), connectTimeout: \(connectTimeout))"
    }
}
