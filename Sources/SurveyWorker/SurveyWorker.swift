import Foundation
import Shared

/// Rapport's SurveyWorker: reads `survey-events`.
@main
struct SurveyWorker: WorkerDefinition {
    static let descriptor = WorkerDescriptor(
        name: "SurveyWorker",
        component: "survey",
        defaultGroupID: "rapport-survey",
        defaultHTTPPort: 8083,
        inputTopic: { $0.surveyEvents },
        migrations: { try Migration.load(component: "survey", bundle: .module) }
    )

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}
