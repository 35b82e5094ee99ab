import CRdKafka
import Foundation

/// Which clients a librdkafka property applies to, from librdkafka's own property table
/// (`rd_kafka_conf_properties_show`, its C/P column). Pass-through `KAFKA_*` properties are given only to the clients
/// they apply to: a consumer-only property on the producer makes librdkafka log a `CONFWARN` line at every start.
enum PropertyScope: Sendable {
    case consumer, producer, both

    /// The scope of every property of the linked librdkafka, read once.
    static let table: [String: PropertyScope] = {
        var buffer: UnsafeMutablePointer<CChar>?
        var size = 0
        guard let stream = open_memstream(&buffer, &size) else { return [:] }
        rd_kafka_conf_properties_show(stream)
        fclose(stream)
        defer { free(buffer) }
        guard let buffer else { return [:] }
        var table: [String: PropertyScope] = [:]
        for line in String(cString: buffer).split(separator: "\n") {
            let columns = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard columns.count >= 2, !columns[0].isEmpty, !columns[0].hasPrefix("-"), columns[0] != "Property" else { continue }
            switch columns[1] {
            case "C": table[columns[0]] = .consumer
            case "P": table[columns[0]] = .producer
            case "*": table[columns[0]] = .both
            default: continue
            }
        }
        return table
    }()

    /// Whether `property` applies to this kind of client; unknown properties (librdkafka rejects them at start) do.
    static func property(_ property: String, appliesTo client: PropertyScope) -> Bool {
        guard let scope = table[property] else { return true }
        return scope == .both || scope == client
    }
}

extension Dictionary where Key == String, Value == String {
    /// The pass-through properties that apply to `client`.
    func applying(to client: PropertyScope) -> [String: String] {
        filter { PropertyScope.property($0.key, appliesTo: client) }
    }
}
