/// A setting that Rapport cannot start with. Its description is one line that names the variable (or property)
/// and the problem, and never echoes a secret value.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The environment variable, librdkafka property or option at fault, e.g. `KAFKA_BROKERS`.
    public let setting: String
    /// What is wrong with it, e.g. "must not be empty".
    public let problem: String

    /// Creates an error naming `setting` and what is wrong with it.
    public init(_ setting: String, _ problem: String) {
        self.setting = setting
        self.problem = problem
    }

    public var description: String { "invalid configuration: \(setting): \(problem)" }
}
