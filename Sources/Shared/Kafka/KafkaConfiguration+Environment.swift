import CRdKafka
import Foundation

extension KafkaConfiguration {
    /// Variables starting with `KAFKA_` that Rapport reads itself; every other one is a librdkafka property.
    public static let reservedVariables: Set<String> = ["KAFKA_BROKERS", "KAFKA_GROUP_ID"]

    /// Reads `KAFKA_BROKERS` and passes every other `KAFKA_*` variable through to librdkafka:
    /// `KAFKA_SECURITY_PROTOCOL` → `security.protocol`, `KAFKA_SASL_MECHANISMS` → `sasl.mechanisms`. Secrets can be
    /// given as files (`KAFKA_SASL_PASSWORD_FILE`).
    ///
    /// - Parameters:
    ///   - environment: The variables to read.
    ///   - clientID: The client id to use.
    /// - Throws: ``ConfigurationError`` naming the variable when `KAFKA_BROKERS` is empty or malformed, or when
    ///   librdkafka does not know a property or rejects its value.
    public init(environment: Environment, clientID: String) throws {
        self.init()
        self.clientID = clientID
        let brokers = try environment.string("KAFKA_BROKERS", default: "localhost:9092")
        bootstrapServers = try Self.parseBrokers(brokers)
        for name in environment.names(withPrefix: "KAFKA_") where !Self.reservedVariables.contains(name) {
            if Self.isServiceLink(name) {
                ignoredVariables.append(name)
                continue
            }
            guard let value = try environment.string(name) else { continue }
            let property = Self.property(forVariable: name)
            try Self.validate(property: property, value: value, variable: name)
            properties[property] = value
        }
    }

    /// Whether `name` has the shape of a variable Kubernetes injects for a Service (`enableServiceLinks`): a Service
    /// `kafka-ui` gives `KAFKA_UI_SERVICE_HOST`, `KAFKA_UI_SERVICE_PORT[_NAME]`, `KAFKA_UI_PORT`,
    /// `KAFKA_UI_PORT_8080_TCP[_PROTO|_PORT|_ADDR]`. None is a librdkafka property; passed through they would stop
    /// the worker at start, so they are ignored (and named in a warning).
    public static func isServiceLink(_ name: String) -> Bool {
        if name.hasSuffix("_SERVICE_HOST") || name.hasSuffix("_PORT") || name.contains("_SERVICE_PORT") { return true }
        let parts = name.split(separator: "_")
        guard let port = parts.lastIndex(of: "PORT"), port + 2 < parts.count, parts[port + 1].allSatisfy(\.isNumber),
            ["TCP", "UDP", "SCTP"].contains(parts[port + 2])
        else { return false }
        let rest = parts[(port + 3)...]
        return rest.isEmpty || (rest.count == 1 && ["PROTO", "PORT", "ADDR"].contains(rest.first ?? ""))
    }

    /// The librdkafka property a `KAFKA_*` variable names: the prefix dropped, lowercased, `_` → `.`.
    public static func property(forVariable name: String) -> String {
        String(name.dropFirst("KAFKA_".count)).lowercased().replacingOccurrences(of: "_", with: ".")
    }

    static func parseBrokers(_ text: String) throws -> [String] {
        let servers = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !servers.isEmpty, servers.allSatisfy({ !$0.isEmpty }) else {
            throw ConfigurationError("KAFKA_BROKERS", "must not be empty")
        }
        for server in servers {
            guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]),
                (1...65535).contains(port), colon != server.startIndex
            else {
                throw ConfigurationError("KAFKA_BROKERS", "expected host:port[,host:port…], got '\(server)'")
            }
        }
        return servers
    }

    /// Asks librdkafka whether it accepts `property = value`, on a scratch configuration.
    static func validate(property: String, value: String, variable: String) throws {
        guard let conf = rd_kafka_conf_new() else { return }
        defer { rd_kafka_conf_destroy(conf) }
        var message = [CChar](repeating: 0, count: 512)
        let result = rd_kafka_conf_set(conf, property, value, &message, message.count)
        switch result {
        case RD_KAFKA_CONF_OK:
            return
        case RD_KAFKA_CONF_UNKNOWN:
            throw ConfigurationError(variable, "librdkafka has no property '\(property)'")
        default:
            // librdkafka's message names the property and the accepted form; it does not echo the value.
            throw ConfigurationError(variable, String(cBuffer: message))
        }
    }
}
