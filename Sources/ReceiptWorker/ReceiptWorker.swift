import ArgumentParser
import Foundation
import ServiceLifecycle
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
        makeHandler: { topics, environment in try ReceiptHandler(topics: topics, environment: environment) },
        makeServices: { context in
            // The next-sale model's changes folded into its tables.
            let fold = try context.environment.integer("MODEL_FOLD_INTERVAL_MS", default: 1000, in: 10...3_600_000)
            let refresh = try context.environment.integer("TOP_SELLERS_REFRESH_SECONDS", default: 60, in: 0...86_400)
            // A shopper's "customers like you" suggestions are recomputed at most this often.
            let suggestions = try context.environment.integer("SUGGESTIONS_REFRESH_SECONDS", default: 3_600, in: 0...604_800)
            var services: [any Service] = [
                PeriodicService(
                    ModelCompactor(
                        postgres: context.postgres, interval: .milliseconds(fold), refreshAfter: .seconds(refresh),
                        suggestionsAfter: .seconds(suggestions)), logger: context.logger)
            ]
            // The orientation journey's steps, emitted when due.
            if let scheduler = try context.scheduler(
                handler: JourneySteps(stores: try StoreDirectory(environment: context.environment), topics: context.topics))
            {
                services.append(scheduler)
            }
            return services
        }
    )

    static var subcommands: [any ParsableCommand.Type] { [Recommend.self, Rebuild.self, Evaluate.self] }

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}
