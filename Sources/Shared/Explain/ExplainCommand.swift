import ArgumentParser
import Foundation

/// `explain`: one shopper's timeline across the fleet (``ShopperTimeline``) — `CaptureWorker explain` in the contract,
/// and `rapport-tool explain` for an operator without a worker's image at hand.
public struct ExplainCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Print one shopper's timeline: events, consent, orders, surveys, and every decision to send or not, with its reason.")

    @OptionGroup var shopper: ShopperOptions

    public init() {}

    public func run() async throws {
        let identity = shopper.identity
        let lines = try await OperatorCommand.withConnection(applicationName: "rapport explain") { connection in
            try ShopperTimeline.lines(of: identity, connection: connection)
        }
        print(lines.joined(separator: "\n"))
    }
}
