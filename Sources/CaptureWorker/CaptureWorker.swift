import Foundation
import Shared

/// Rapport's CaptureWorker: reads `shopper-events`.
@main
struct CaptureWorker: WorkerDefinition {
    static let descriptor = WorkerDescriptor(
        name: "CaptureWorker",
        component: "capture",
        defaultGroupID: "rapport-capture",
        defaultHTTPPort: 8081,
        inputTopic: { $0.shopperEvents },
        migrations: { try Migration.load(component: "capture", bundle: .module) }
    )

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}
