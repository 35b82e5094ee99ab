import ArgumentParser

/// Rapport's benchmarks: numbers printed, never asserted. docs/benchmarks.md says how to run them and what they measured.
@main
struct RapportBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rapport-bench",
        abstract: "Measure Rapport's throughput (build with -c release; see docs/benchmarks.md).",
        subcommands: [
            FoundationBenchmark.self, PipelineBenchmark.self, CaptureBenchmark.self, ReceiptBenchmark.self, NextSaleBenchmark.self, ChurnBenchmark.self,
            SurveyBenchmark.self, VersusBenchmark.self,
        ],
        defaultSubcommand: FoundationBenchmark.self
    )
}
