import ArgumentParser
import Foundation
import Logging
import Shared

/// Publishes messages: lines from standard input (`key<TAB>value`, or a bare value) or `--count` generated ones.
struct Produce: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish lines from standard input (key<TAB>value or value), or --count generated messages.")

    @Option(help: "The topic to publish to.")
    var topic: String

    @Option(name: .customLong("header"), help: "A header name=value added to every message (repeatable).")
    var headers: [String] = []

    @Option(help: "Generate this many messages instead of reading standard input.")
    var count: Int?

    @Option(help: "With --count: keys are <prefix>-<i mod keys>, values {\"prefix\":…,\"seq\":i}.")
    var prefix = "m"

    @Option(help: "With --count: how many distinct keys.")
    var keys = 16

    @Option(help: "Messages per batch.")
    var batch = 1000

    mutating func run() async throws {
        let environment = Environment()
        let logger = Logger(label: "rapport-tool")
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(environment: environment, clientID: "rapport-tool")),
            logger: logger)
        let headerList = try headers.map { text -> KafkaHeader in
            guard let equals = text.firstIndex(of: "=") else { throw ValidationError("--header expects name=value, got \(text)") }
            return KafkaHeader(key: String(text[..<equals]), text: String(text[text.index(after: equals)...]))
        }
        var pending: [KafkaOutboundMessage] = []
        var failed = 0
        var delivered = 0
        func flush() async throws {
            for result in try await producer.send(pending) {
                switch result {
                case .success: delivered += 1
                case .failure(let error):
                    failed += 1
                    FileHandle.standardError.write(Data("delivery failed: \(error)\n".utf8))
                }
            }
            pending.removeAll(keepingCapacity: true)
        }
        if let count {
            for index in 0..<count {
                let key = "\(prefix)-\(index % max(1, keys))"
                let value = #"{"prefix":"\#(prefix)","seq":\#(index),"key":"\#(key)"}"#
                pending.append(KafkaOutboundMessage(topic: topic, key: Array(key.utf8), value: Array(value.utf8), headers: headerList))
                if pending.count >= batch { try await flush() }
            }
        } else {
            while let line = readLine(strippingNewline: true) {
                guard !line.isEmpty else { continue }
                let parts = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
                let (key, value) = parts.count == 2 ? (Array(parts[0].utf8), Array(parts[1].utf8)) : (nil, Array(line.utf8))
                pending.append(KafkaOutboundMessage(topic: topic, key: key, value: value, headers: headerList))
                if pending.count >= batch { try await flush() }
            }
        }
        if !pending.isEmpty { try await flush() }
        try await producer.close()
        FileHandle.standardError.write(Data("delivered \(delivered), failed \(failed)\n".utf8))
        if failed > 0 { throw ExitCode(1) }
    }
}
