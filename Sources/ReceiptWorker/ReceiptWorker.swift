import ArgumentParser
import Foundation
import Shared

/// Rapport's ReceiptWorker: reads `checkout-events`; keeps orders and their items and the next-sale model; emits the
/// `receipt` email and `post_purchase` recommendations.
@main
struct ReceiptWorker: WorkerDefinition {
    static let descriptor = WorkerDescriptor(
        name: "ReceiptWorker",
        component: "receipt",
        defaultGroupID: "rapport-receipt",
        defaultHTTPPort: 8082,
        inputTopic: { $0.checkoutEvents },
        migrations: { try Migration.load(component: "receipt", bundle: .module) },
        makeHandler: { topics, environment in try ReceiptHandler(topics: topics, environment: environment) }
    )

    static var subcommands: [any ParsableCommand.Type] { [Recommend.self] }

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}
