import Foundation
import NextSale
import Shared

/// ReceiptWorker's side of the scheduler: a due journey step is decided at the moment of sending — its order still
/// standing, the contact's consent and suppression, the pressure caps and quiet hours in the shopper's zone — and,
/// when sent, personal: the thank-you names what they bought and is signed by the store's `signature`; the next sale
/// is computed now, from the model as it stands.
struct JourneySteps: StepHandler {
    let stores: StoreDirectory
    let topics: Topics

    func decide(_ steps: [ScheduledStep], now: Date, connection: PostgresConnection) throws -> [StepOutcome] {
        let longest = stores.allSettings.flatMap(\.pressureCaps).map(\.window.seconds).max() ?? 0
        let addresses = Set(steps.compactMap { step in step.email.map { Contacts.Key(storeID: step.storeID, email: $0) } })
        let contacts = try Contacts.load(addresses, sentSince: now.addingTimeInterval(-longest), connection: connection)
        let orders = try OrderStore.recorded(
            Set(steps.compactMap { step in step.orderID.map { OrderStore.Key(storeID: step.storeID, orderID: $0) } }), connection: connection)
        // What the shopper told the store (SurveyWorker): the channels the walk-with-me invites to, the interests the
        // next sale leans towards — read for those two steps only.
        var shoppers: [Int64: String] = [:]  // shopper → store (shopper ids are unique across stores)
        for step in steps where [EmailTemplate.walkWithMe.name, EmailTemplate.nextSale.name].contains(step.template) {
            if let shopper = step.shopperID { shoppers[shopper] = step.storeID }
        }
        let byShopper = shoppers.sorted { $0.key < $1.key }.map { (store: $0.value, shopperID: $0.key) }
        let preferences = try ShopperPreferences.load(byShopper, connection: connection)
        var outcomes = [StepOutcome?](repeating: nil, count: steps.count)

        // Exit conditions, then permission, then what cannot be said: none of them spends budget.
        var byContact: [Contacts.Key: [Int]] = [:]
        for (index, step) in steps.enumerated() {
            let settings = stores.settings(for: step.storeID)
            let key = step.email.map { Contacts.Key(storeID: step.storeID, email: $0) }
            let contact = key.flatMap { contacts[$0] }
            let template = EmailTemplate.named(step.template)
            if let orderID = step.orderID, let order = orders[OrderStore.Key(storeID: step.storeID, orderID: orderID)], order.status != .completed {
                outcomes[index] = StepOutcome(.cancelled, reason: order.status.stepCancellationReason)
            } else if template == nil {
                outcomes[index] = StepOutcome(.dropped, reason: "unknown_template")
            } else if let key, let contact, let template {
                // Permission as the policy sees it, caps and quiet hours aside (those come below, per contact).
                if case .suppressed(let reason) = ConversationPolicy(settings: settings).decide(
                    template, for: contact.permission, at: now, direct: true, sentMarketing: [])
                {
                    outcomes[index] = StepOutcome(
                        .suppressed, reason: reason,
                        decisions: [
                            ContactDecisionLog.Entry(
                                storeID: step.storeID, contactID: contact.contactID, subject: "order:\(step.orderID ?? step.causationID)",
                                worker: ReceiptHandler.worker, template: template, decision: .suppressed(reason: reason), commandID: nil,
                                causationID: step.causationID, decidedAt: now)
                        ])
                } else if template == .surveyInvite, settings.surveyURL == nil {
                    outcomes[index] = StepOutcome(.dropped, reason: "no_survey_url")
                } else if template == .walkWithMe,
                    settings.walkWithMeChannels(chosen: step.shopperID.flatMap { preferences[$0]?.channels }).isEmpty
                {
                    let chose = step.shopperID.flatMap { preferences[$0]?.channels } != nil
                    outcomes[index] = StepOutcome(.dropped, reason: chose ? "no_chosen_channels" : "no_channels")
                } else {
                    byContact[key, default: []].append(index)
                }
            } else {
                outcomes[index] = StepOutcome(.dropped, reason: "no_address")
            }
        }

        // The next sale is computed at sending time, for every next_sale step of the batch at once.
        let nextSale = steps.indices.filter { outcomes[$0] == nil && steps[$0].template == EmailTemplate.nextSale.name }
        let nextSaleShoppers = Set(nextSale.compactMap { steps[$0].shopperID })
        let histories = try PurchaseHistory.load(byShopper.filter { nextSaleShoppers.contains($0.shopperID) }, connection: connection)
        let queries = nextSale.map { index in
            CandidateQuery(
                storeID: steps[index].storeID, history: steps[index].shopperID.flatMap { histories[$0] } ?? [],
                interests: steps[index].shopperID.flatMap { preferences[$0]?.interests } ?? [], shopperID: steps[index].shopperID)
        }
        let found = try PostgresCandidateSource(connection: connection, asOf: now).candidates(for: queries)
        var recommendations: [Int: [Recommendation]] = [:]
        for (index, candidates) in zip(nextSale, found) {
            let bought = Set((steps[index].shopperID.flatMap { histories[$0] } ?? []).flatMap { $0.products.map(\.id) })
            recommendations[index] = Recommender.rank(candidates, excluding: bought, limit: ReceiptHandler.recommendationLimit)
        }
        for index in nextSale where recommendations[index]?.isEmpty ?? true {
            outcomes[index] = StepOutcome(.dropped, reason: "nothing_to_recommend")
            byContact = byContact.mapValues { $0.filter { $0 != index } }
        }

        for (key, indices) in byContact where !indices.isEmpty {
            guard var contact = contacts[key] else { continue }
            let settings = stores.settings(for: key.storeID)
            let policy = ConversationPolicy(settings: settings)
            let templates = indices.compactMap { EmailTemplate.named(steps[$0].template) }
            let decisions = policy.decide(templates.map { ($0, false) }, for: contact.permission, at: now, sentMarketing: contact.sentMarketing)
            for ((index, template), decision) in zip(zip(indices, templates), decisions) {
                let step = steps[index]
                let subject = "order:\(step.orderID ?? step.causationID)"
                func entry(_ command: String?) -> ContactDecisionLog.Entry {
                    ContactDecisionLog.Entry(
                        storeID: step.storeID, contactID: contact.contactID, subject: subject, worker: ReceiptHandler.worker, template: template,
                        decision: decision, commandID: command, causationID: step.causationID, decidedAt: now)
                }
                if let declined = StepOutcome(declining: decision, recorded: entry(nil)) {
                    outcomes[index] = declined
                    continue
                }
                let chosen = step.shopperID.flatMap { preferences[$0]?.channels }
                var commands = [
                    email(template, step: step, contact: contact, settings: settings, recommendations: recommendations[index], channels: chosen, now: now)
                ]
                if let products = recommendations[index] {
                    commands.append(
                        RecommendationCommand.make(
                            context: "next_sale", storeID: step.storeID, causationID: step.causationID, key: step.shopperKey, userID: nil,
                            anonymousID: nil, email: contact.email, products: Receipt.products(products), createdAt: now,
                            topic: topics.recommendationCommands))
                }
                if template.category == .marketing { contact.sentMarketing.append(now) }
                var logged = [entry(commands[0].id)]
                if commands.count > 1 {
                    logged.append(
                        ContactDecisionLog.Entry(
                            storeID: step.storeID, contactID: contact.contactID, subject: subject, worker: ReceiptHandler.worker,
                            recommendation: "next_sale", commandID: commands[1].id, causationID: step.causationID, decidedAt: now))
                }
                outcomes[index] = StepOutcome(.sent(commands: commands), reason: "permitted", decisions: logged)
            }
        }
        return outcomes.map { $0 ?? StepOutcome(.dropped, reason: "undecided") }
    }

    /// The step's email: personal data from the step, the store's content, the recommendations computed now.
    private func email(
        _ template: EmailTemplate, step: ScheduledStep, contact: Contacts.Contact, settings: StoreSettings, recommendations: [Recommendation]?,
        channels chosen: [String]?, now: Date
    ) -> OutboundCommand {
        var data: [String: JSONValue] = ["first_name": step.data["first_name"] ?? .null, "order_id": step.data["order_id"] ?? .null]
        switch template {
        case .thankYou:
            data["products"] = step.data["products"] ?? .array([])
            data["signature"] = .string(settings.signature ?? settings.senderName)
        case .surveyInvite:
            data["survey_url"] = settings.surveyURL.map(JSONValue.string) ?? .null
        case .whyWeExist:
            data["brand_story"] = .string(settings.brandStory)
        case .nextSale:
            data["recommendations"] = .array(Receipt.products(recommendations ?? []))
        case .walkWithMe:
            data["channels"] = .array(settings.walkWithMeChannels(chosen: chosen))
        default:
            break
        }
        let name = [step.data["first_name"]?.stringValue, step.data["last_name"]?.stringValue].compactMap { $0 }.joined(separator: " ")
        return EmailCommand.make(
            template: template, storeID: step.storeID, causationID: step.causationID, key: step.shopperKey, email: contact.email,
            name: name.isEmpty ? nil : name, locale: contact.locale ?? settings.locale, settings: settings, data: data,
            unsubscribeToken: contact.unsubscribeToken, createdAt: now, topic: topics.emailCommands)
    }
}
