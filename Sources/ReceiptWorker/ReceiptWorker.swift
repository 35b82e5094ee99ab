import Foundation
import Shared

/// Rapport's ReceiptWorker: reads `checkout-events`.
@main
struct ReceiptWorker: WorkerDefinition {
    static let descriptor = WorkerDescriptor(
        name: "ReceiptWorker",
        component: "receipt",
        defaultGroupID: "rapport-receipt",
        defaultHTTPPort: 8082,
        inputTopic: { $0.checkoutEvents },
        migrations: { try Migration.load(component: "receipt", bundle: .module) }
    )

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}
