import CLibPQ
import Foundation

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
        defer { PQconninfoFree(options) }
        // PQconninfoParse checks the syntax only; check the values libpq would reject at connect time.
        var option = options
        while let keyword = option.pointee.keyword {
            defer { option += 1 }
            guard let value = option.pointee.val.map({ String(cString: $0) }) else { continue }
            switch String(cString: keyword) {
            case "port":
                for port in value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let number = Int(port), (1...65535).contains(number) else {
                        throw ConfigurationError(variable, "port must be a number from 1 to 65535")
                    }
                }
            case "sslmode":
                guard Self.sslModes.contains(value) else {
                    throw ConfigurationError(variable, "sslmode must be one of \(Self.sslModes.joined(separator: ", "))")
                }
            default:
                continue
            }
        }
    }

    /// libpq's `sslmode` values.
    static let sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

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
