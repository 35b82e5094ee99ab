import ArgumentParser
import Shared

/// Operator and test tooling: Rapport's Kafka topics, the demo, and the fleet's `explain`.
@main
struct RapportTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rapport-tool",
        abstract: "Produce to and consume from Rapport's Kafka topics, play the demo, explain a shopper (KAFKA_* and DATABASE_URL configure it).",
        subcommands: [Produce.self, Consume.self, Demo.self, ExplainCommand.self]
    )
}
