import Foundation

/// The process environment as configuration reads it.
///
/// Every variable `X` may instead be given as `X_FILE`, the path of a file holding the value (the Docker and
/// Kubernetes convention for secrets): a trailing newline is trimmed. Setting both is an error.
public struct Environment: Sendable {
    /// The raw variables.
    public let variables: [String: String]

    /// Wraps the given variables. Default: the process environment.
    public init(_ variables: [String: String] = ProcessInfo.processInfo.environment) {
        self.variables = variables
    }

    /// The value of `name` (or the contents of the file `name_FILE` points to); `nil` when neither is set.
    /// - Throws: ``ConfigurationError`` when both are set or the file cannot be read.
    public func string(_ name: String) throws -> String? {
        let direct = variables[name]
        guard let path = variables[name + "_FILE"] else { return direct }
        if direct != nil {
            throw ConfigurationError(name, "set both \(name) and \(name)_FILE; set one")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(name + "_FILE", "cannot read file \(path)")
        }
        var text = String(decoding: data, as: UTF8.self)
        while text.last == "\n" || text.last == "\r" { text.removeLast() }
        return text
    }

    /// The value of `name`, or `defaultValue` when unset.
    /// - Throws: ``ConfigurationError`` when the value is set but empty.
    public func string(_ name: String, default defaultValue: String) throws -> String {
        guard let value = try string(name) else { return defaultValue }
        guard !value.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ConfigurationError(name, "must not be empty")
        }
        return value
    }

    /// An integer in `range`, or `defaultValue` when unset.
    /// - Throws: ``ConfigurationError`` when the value is not a whole number in `range`.
    public func integer(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = try string(name) else { return defaultValue }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
            throw ConfigurationError(name, "expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// One of `choices` (compared case-insensitively), or `defaultValue` when unset.
    /// - Throws: ``ConfigurationError`` naming the accepted values.
    public func choice(_ name: String, default defaultValue: String, among choices: [String]) throws -> String {
        guard let text = try string(name) else { return defaultValue }
        let lowered = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard choices.contains(lowered) else {
            throw ConfigurationError(name, "expected one of \(choices.joined(separator: ", "))")
        }
        return lowered
    }

    /// The names of every variable (and `_FILE` variable, by its base name) that starts with `prefix`, sorted.
    public func names(withPrefix prefix: String) -> [String] {
        let names = variables.keys.filter { $0.hasPrefix(prefix) }.map { name in
            name.hasSuffix("_FILE") ? String(name.dropLast(5)) : name
        }
        return Set(names).sorted()
    }
}
