import ArgumentParser
import Foundation
import Shared

/// Rapport's CaptureWorker: reads `shopper-events`; keeps shoppers, identities, the consent ledger, suppressions,
/// interests and erasures; emits `welcome_offer` and `confirm_subscription` emails and browse recommendations.
@main
struct CaptureWorker: WorkerDefinition {
    static let descriptor = WorkerDescriptor(
        name: "CaptureWorker",
        component: "capture",
        defaultGroupID: "rapport-capture",
        defaultHTTPPort: 8081,
        inputTopic: { $0.shopperEvents },
        migrations: { try Migration.load(component: "capture", bundle: .module) },
        makeHandler: { topics, environment in try CaptureHandler(topics: topics, environment: environment) }
    )

    static var subcommands: [any ParsableCommand.Type] { [ExplainCommand.self] }

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}
