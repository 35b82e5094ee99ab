import ArgumentParser
import Foundation

/// `explain`: one shopper's timeline across the fleet (``ShopperTimeline``) — `CaptureWorker explain` in the contract,
/// and `rapport-tool explain` for an operator without a worker's image at hand.
public struct ExplainCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Print one shopper's timeline: events, consent, orders, surveys, and every decision to send or not, with its reason.")

    @Option(help: "The store (context.storeId).")
    var store = "default"

    @Option(help: "The shopper's email address.")
    var email: String?

    @Option(help: "The shopper's userId.")
    var userId: String?

    @Option(help: "The shopper's anonymousId.")
    var anonymousId: String?

    public init() {}

    public func validate() throws {
        guard [email, userId, anonymousId].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --email, --user-id, --anonymous-id")
        }
        if let email, EmailAddress(email) == nil { throw ValidationError("--email is not a valid email address") }
    }

    public func run() async throws {
        let identity: ShopperTimeline.Identity =
            if let email { .email(EmailAddress(email)?.value ?? email) } else if let userId { .userID(userId) } else { .anonymousID(anonymousId ?? "") }
        let store = self.store
        let lines = try await OperatorCommand.withConnection(applicationName: "rapport explain") { connection in
            try ShopperTimeline.lines(store: store, identity: identity, connection: connection)
        }
        print(lines.joined(separator: "\n"))
    }
}
