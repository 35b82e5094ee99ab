import ArgumentParser
import Foundation
import ServiceLifecycle
import Shared

/// Rapport's SurveyWorker: reads `survey-events`; keeps responses (as given) and each shopper's profile, and every
/// customer's churn risk; emits `post_survey` recommendations, adapts the pending walk-with-me to the channels chosen,
/// and sends a `win_back` when a customer slips away.
@main
struct SurveyWorker: WorkerDefinition {
    static let descriptor = WorkerDescriptor(
        name: "SurveyWorker",
        component: "survey",
        defaultGroupID: "rapport-survey",
        defaultHTTPPort: 8083,
        inputTopic: { $0.surveyEvents },
        migrations: { try Migration.load(component: "survey", bundle: .module) },
        makeHandler: { topics, environment in SurveyHandler(stores: try StoreDirectory(environment: environment), topics: topics) },
        makeServices: { context in
            let stores = try StoreDirectory(environment: context.environment)
            // Risk grows while nothing happens: every customer is scored again every CHURN_RESCORE_SECONDS (0: not in
            // this process — `SurveyWorker rescore` from a CronJob, or another deployment, does it).
            let rescore = try context.environment.integer("CHURN_RESCORE_SECONDS", default: 3600, in: 0...604_800)
            var services: [any Service] = []
            if rescore > 0 {
                services.append(
                    PeriodicService(
                        ChurnScorer(postgres: context.postgres, stores: stores, groupID: context.groupID, interval: .seconds(rescore), logger: context.logger),
                        logger: context.logger))
            }
            // Win-back steps, emitted when due.
            if let scheduler = try context.scheduler(handler: WinBackSteps(stores: stores, topics: context.topics)) { services.append(scheduler) }
            return services
        }
    )

    static var subcommands: [any ParsableCommand.Type] { [ChurnCommand.self, Rescore.self] }

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}
