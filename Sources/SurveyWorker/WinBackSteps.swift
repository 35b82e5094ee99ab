import Churn
import Foundation
import NextSale
import Shared

/// SurveyWorker's side of the scheduler: a due `win_back` step is decided at the moment of sending — the lapse still
/// on (an order since ends it: `ordered_again`), not history (a lapse that began more than `stale_after_hours` ago,
/// say while the worker was down for a week or a history was imported, starts nothing: `stale_event`), the contact's
/// consent and suppression, the pressure caps and quiet hours — and, when sent, personal: what they bought last, the
/// next sale computed now from the model and their stated interests, the store's offer code.
struct WinBackSteps: StepHandler {
    let stores: StoreDirectory
    let topics: Topics

    /// How many products a win-back recommends.
    static let recommendationLimit = 6

    func decide(_ steps: [ScheduledStep], now: Date, connection: PostgresConnection) throws -> [StepOutcome] {
        let longest = stores.allSettings.flatMap(\.pressureCaps).map(\.window.seconds).max() ?? 0
        let contacts = try Contacts.load(
            Set(steps.compactMap { step in step.email.map { Contacts.Key(storeID: step.storeID, email: $0) } }), sentSince: now.addingTimeInterval(-longest),
            connection: connection)
        let shoppers = steps.compactMap { step in step.shopperID.map { (store: step.storeID, shopperID: $0) } }
        var lastOrders: [Int64: Date] = [:]
        for store in Set(shoppers.map(\.store)) {
            lastOrders.merge(
                try ChurnStore.lastOrders(store: store, shoppers: shoppers.filter { $0.store == store }.map(\.shopperID), asOf: now, connection: connection)
            ) { first, _ in first }
        }
        let histories = try PurchaseHistory.load(shoppers, connection: connection)
        let preferences = try ShopperPreferences.load(shoppers, connection: connection)
        let queries = steps.map { step in
            CandidateQuery(
                storeID: step.storeID, history: step.shopperID.flatMap { histories[$0] } ?? [],
                interests: step.shopperID.flatMap { preferences[$0]?.interests } ?? [], shopperID: step.shopperID)
        }
        let found = try PostgresCandidateSource(connection: connection, asOf: now).candidates(for: queries)

        var outcomes = [StepOutcome?](repeating: nil, count: steps.count)
        var byContact: [Contacts.Key: [Int]] = [:]
        var recommendations: [Int: [Recommendation]] = [:]
        for (index, step) in steps.enumerated() {
            let settings = stores.settings(for: step.storeID)
            let key = step.email.map { Contacts.Key(storeID: step.storeID, email: $0) }
            let lapseBegan = step.data["last_order_at"]?.stringValue.flatMap { Date(rfc3339: $0) }
            if step.template != EmailTemplate.winBack.name {
                outcomes[index] = StepOutcome(.dropped, reason: "unknown_template")
            } else if let shopper = step.shopperID, let last = lastOrders[shopper], let lapseBegan, last > lapseBegan {
                outcomes[index] = StepOutcome(.cancelled, reason: "ordered_again")
            } else if let stale = ConversationPolicy(settings: settings).staleness(of: step.dueAt, processedAt: now),
                case .dropped(let reason) = stale
            {
                outcomes[index] = StepOutcome(.dropped, reason: reason)
            } else if let key, let contact = contacts[key] {
                if case .suppressed(let reason) = ConversationPolicy(settings: settings).decide(
                    .winBack, for: contact.permission, at: now, direct: true, sentMarketing: [])
                {
                    outcomes[index] = StepOutcome(
                        .suppressed, reason: reason, decisions: [entry(step, contact: contact, decision: .suppressed(reason: reason), command: nil, now: now)])
                    continue
                }
                let bought = Set((step.shopperID.flatMap { histories[$0] } ?? []).flatMap { $0.products.map(\.id) })
                recommendations[index] = Recommender.rank(found[index], excluding: bought, limit: Self.recommendationLimit)
                byContact[key, default: []].append(index)
            } else {
                outcomes[index] = StepOutcome(.dropped, reason: "no_address")
            }
        }

        for (key, indices) in byContact {
            guard var contact = contacts[key] else { continue }
            let settings = stores.settings(for: key.storeID)
            let decisions = ConversationPolicy(settings: settings).decide(
                indices.map { _ in (EmailTemplate.winBack, false) }, for: contact.permission, at: now, sentMarketing: contact.sentMarketing)
            for (index, decision) in zip(indices, decisions) {
                let step = steps[index]
                if let declined = StepOutcome(declining: decision, recorded: entry(step, contact: contact, decision: decision, command: nil, now: now)) {
                    outcomes[index] = declined
                    continue
                }
                let products = recommendations[index] ?? []
                var commands = [
                    email(step, contact: contact, settings: settings, history: step.shopperID.flatMap { histories[$0] } ?? [], products: products, now: now)
                ]
                var logged = [entry(step, contact: contact, decision: decision, command: commands[0].id, now: now)]
                if !products.isEmpty {
                    let known = ShopperResolver.Known(email: contact.email)
                    commands.append(
                        RecommendationCommand.make(
                            context: "win_back", storeID: step.storeID, causationID: step.causationID, key: step.shopperKey, userID: known.userID,
                            anonymousID: known.anonymousID, email: known.email, products: products.map(\.json), createdAt: now,
                            topic: topics.recommendationCommands))
                    logged.append(
                        ContactDecisionLog.Entry(
                            storeID: step.storeID, contactID: contact.contactID, subject: Self.subject(step), worker: SurveyHandler.worker,
                            recommendation: "win_back", commandID: commands[1].id, causationID: step.causationID, decidedAt: now))
                }
                contact.sentMarketing.append(now)
                outcomes[index] = StepOutcome(.sent(commands: commands), reason: "permitted", decisions: logged)
            }
        }
        return outcomes.map { $0 ?? StepOutcome(.dropped, reason: "undecided") }
    }

    static func subject(_ step: ScheduledStep) -> String { "shopper:\(step.shopperID.map(String.init) ?? step.shopperKey)" }

    private func entry(_ step: ScheduledStep, contact: Contacts.Contact, decision: ContactDecision, command: String?, now: Date) -> ContactDecisionLog.Entry {
        ContactDecisionLog.Entry(
            storeID: step.storeID, contactID: contact.contactID, subject: Self.subject(step), worker: SurveyHandler.worker, template: .winBack,
            decision: decision,
            commandID: command, causationID: step.causationID, decidedAt: now)
    }

    /// The win-back: what they bought last, what they may like next, the store's offer code.
    private func email(
        _ step: ScheduledStep, contact: Contacts.Contact, settings: StoreSettings, history: [PurchasedOrder], products: [Recommendation], now: Date
    ) -> OutboundCommand {
        var data: [String: JSONValue] = [
            "last_order_at": step.data["last_order_at"] ?? .null,
            "last_order_products": .array((history.last?.products ?? []).map { .object(["product_id": .string($0.id)]) }),
            "recommendations": .array(products.map(\.json)),
        ]
        if let code = settings.winBack?.offerCode { data["offer_code"] = .string(code) }
        return EmailCommand.make(
            template: .winBack, storeID: step.storeID, causationID: step.causationID, key: step.shopperKey, email: contact.email, name: nil,
            locale: contact.locale ?? settings.locale, settings: settings, data: data, unsubscribeToken: contact.unsubscribeToken, createdAt: now,
            topic: topics.emailCommands)
    }
}
