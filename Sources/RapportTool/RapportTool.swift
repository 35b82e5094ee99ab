import ArgumentParser

/// Operator and test tooling around Rapport's Kafka topics.
@main
struct RapportTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rapport-tool",
        abstract: "Produce to and consume from Rapport's Kafka topics, and play the demo (KAFKA_* variables configure the client).",
        subcommands: [Produce.self, Consume.self, Demo.self]
    )
}
