import Foundation

import CLibPQ

extension PostgresConfiguration {
    /// Reads `DATABASE_URL` (or `DATABASE_URL_FILE`) and `DATABASE_POOL_SIZE`.
    ///
    /// - Parameters:
    ///   - environment: The variables to read.
    ///   - applicationName: The name the server shows for these connections.
    /// - Throws: ``ConfigurationError`` naming the variable when the URL is empty or libpq cannot parse it, or the
    ///   pool size is not a number from 1 to 100. The message never repeats the URL, which may hold a password.
    public init(environment: Environment, applicationName: String) throws {
        self.init()
        self.applicationName = applicationName
        url = try environment.string("DATABASE_URL", default: url)
        try Self.validate(url: url, variable: "DATABASE_URL")
        poolSize = try environment.integer("DATABASE_POOL_SIZE", default: poolSize, in: 1...100)
    }

    /// Asks libpq to parse `url` without connecting.
    static func validate(url: String, variable: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &message) else {
            let reason = message.map { String(cString: $0) } ?? "unparseable"
            if let message { PQfreemem(message) }
            throw ConfigurationError(variable, "not a valid libpq connection URI (\(Self.redactingQuoted(reason)))")
        }
        PQconninfoFree(options)
    }

    /// libpq's parse errors quote pieces of the string, which may be secret: keep the explanation, drop the quotes.
    static func redactingQuoted(_ message: String) -> String {
        var result = ""
        var inQuote = false
        for character in message.trimmingCharacters(in: .whitespacesAndNewlines) {
            if character == "\"" {
                inQuote.toggle()
                result += inQuote ? "\"…" : "\""
            } else if !inQuote {
                result.append(character)
            }
        }
        return result
    }
}
