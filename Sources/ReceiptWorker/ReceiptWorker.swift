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
        makeHandler: { topics, environment in try ReceiptHandler(topics: topics, environment: environment) },
        makeServices: { context in
            // The orientation journey's steps, emitted when due. SCHEDULER_ENABLED=false leaves them to other replicas.
            guard try context.environment.choice("SCHEDULER_ENABLED", default: "true", among: ["true", "false"]) == "true" else { return [] }
            let interval = try context.environment.integer("SCHEDULER_INTERVAL_MS", default: 1000, in: 10...3_600_000)
            let stores = try StoreDirectory(environment: context.environment)
            return [
                Scheduler(
                    postgres: context.postgres, producer: context.producer, groupID: context.groupID,
                    handler: JourneySteps(stores: stores, topics: context.topics), interval: .milliseconds(interval), logger: context.logger)
            ]
        }
    )

    static var subcommands: [any ParsableCommand.Type] { [Recommend.self, Rebuild.self] }

    static func main() async {
        await WorkerCommand<Self>.main()
    }
}
