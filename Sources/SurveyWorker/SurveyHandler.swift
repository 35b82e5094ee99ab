import Churn
import Foundation
import NextSale
import InboundEvents
import Shared

/// SurveyWorker's behaviour: for a batch of `survey-events`, store each response as given (append-only), derive each
/// respondent's profile again from all their responses and publish what every worker acts on (interests, channels:
/// ``ShopperPreferences``); adapt the shopper's pending walk-with-me to the channels they chose; and for each recent
/// survey, a `post_survey` recommendation from their stated interests and the next-sale model, and an
/// acknowledgement where the store enables it.
struct SurveyHandler: PipelineHandler {
    let stores: StoreDirectory
    let topics: Topics
    /// The batch's clock: what "now" is for history-is-not-a-conversation.
    let clock: @Sendable () -> Date

    /// How many products a `post_survey` recommendation lists.
    static let recommendationLimit = 10
    /// The worker named in every decision it records.
    static let worker = "SurveyWorker"

    init(stores: StoreDirectory, topics: Topics, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.stores = stores
        self.topics = topics
        self.clock = clock
    }

    func decode(_ message: SegmentMessage) throws(DecodeFailure) -> SurveyEvent {
        try SurveyEvent(message)
    }

    /// A submission of the batch with the shopper it resolved to.
    struct Respondent {
        var inbound: InboundEvent<SurveyEvent>
        var submission: SurveyEvent.Submission
        var shopperID: Int64 = 0
        var message: SegmentMessage { inbound.message }
    }

    func handle(_ events: [InboundEvent<SurveyEvent>], connection: PostgresConnection) throws -> [OutboundCommand] {
        var respondents: [Respondent] = events.compactMap { inbound in
            guard case .submitted(let submission) = inbound.event.action else { return nil }
            return Respondent(inbound: inbound, submission: submission)
        }
        guard !respondents.isEmpty else { return [] }
        let resolution = try ShopperResolver.resolve(respondents.map { ($0.message.storeID, $0.inbound.event.identities) }, connection: connection)
        for index in respondents.indices { respondents[index].shopperID = resolution.shoppers[index] }

        try connection.execute(
            .insert(
                into: "survey_responses", respondents,
                [
                    .init("store_id", "text", \.message.storeID), .init("message_id", "text", \.message.messageID),
                    .init("survey_id", "text", \.submission.surveyID), .init("shopper_key", "text", \.message.shopperKey),
                    .init("shopper_id", "bigint", \.shopperID), .init("answers", "jsonb") { JSONValue.object($0.submission.answers) },
                    .init("submitted_at", "timestamptz", \.message.timestamp),
                ],
                then: "ON CONFLICT (store_id, message_id) DO NOTHING"))
        var shoppers: [Int64: String] = [:]  // shopper → store
        for respondent in respondents { shoppers[respondent.shopperID] = respondent.message.storeID }
        let keys = shoppers.sorted { $0.key < $1.key }.map { (store: $0.value, shopperID: $0.key) }
        let profiles = try ProfileStore.derive(keys, connection: connection)
        try ShopperPreferences.store(
            keys.compactMap { key in
                profiles[key.shopperID].map { (key.store, key.shopperID, ShopperPreferences(interests: $0.interests ?? [], channels: $0.channels)) }
            }, connection: connection)
        try adaptWalkWithMe(respondents, profiles: profiles, connection: connection)
        return try converse(respondents, profiles: profiles, connection: connection)
    }

    /// A shopper of a store, as a set's element.
    private struct ShopperKey: Hashable {
        var store: String
        var shopperID: Int64
    }

    /// A shopper who chose channels, none of which the store's walk-with-me could invite to, will not get it: their
    /// pending step is dropped now, with its reason. (Otherwise the step invites to the chosen channels when it is
    /// sent: ReceiptWorker reads ``ShopperPreferences``.) Old surveys count too: this is state, not a conversation.
    private func adaptWalkWithMe(_ respondents: [Respondent], profiles: [Int64: Profile], connection: PostgresConnection) throws {
        var nothing: [(store: String, shopperID: Int64)] = []
        var seen = Set<ShopperKey>()
        for respondent in respondents where respondent.submission.answers["channels"] != nil {
            let store = respondent.message.storeID
            guard let chosen = profiles[respondent.shopperID]?.channels, stores.settings(for: store).walkWithMeChannels(chosen: chosen).isEmpty,
                seen.insert(ShopperKey(store: store, shopperID: respondent.shopperID)).inserted
            else { continue }
            nothing.append((store, respondent.shopperID))
        }
        guard !nothing.isEmpty else { return }
        try StepStore.cancel(
            where: "(store_id, shopper_id) IN (SELECT * FROM unnest(\(PostgresArray(nothing.map(\.store)))::text[], \(PostgresArray(nothing.map(\.shopperID)))::bigint[]))",
            templates: [EmailTemplate.walkWithMe.name], reason: "no_chosen_channels", as: .dropped, connection: connection)
    }

    /// The `post_survey` recommendation and the acknowledgement of each recent survey.
    private func converse(_ respondents: [Respondent], profiles: [Int64: Profile], connection: PostgresConnection) throws -> [OutboundCommand] {
        let now = clock()
        var decisions: [ContactDecisionLog.Entry] = []
        var commands: [OutboundCommand] = []
        // History is not a conversation: an old survey shapes the profile and says nothing.
        var recent: [Respondent] = []
        for respondent in respondents {
            let message = respondent.message
            let settings = stores.settings(for: message.storeID)
            if let stale = ConversationPolicy(settings: settings).staleness(of: message.timestamp, processedAt: now) {
                let subject = "survey:\(respondent.submission.surveyID)"
                decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: nil, subject: subject, worker: Self.worker, recommendation: "post_survey", commandID: nil,
                        causationID: message.messageID, decidedAt: message.timestamp, decision: stale))
                if settings.surveyAcknowledgement {
                    decisions.append(
                        ContactDecisionLog.Entry(
                            storeID: message.storeID, contactID: nil, subject: subject, worker: Self.worker, template: .surveyAcknowledgement, decision: stale,
                            commandID: nil, causationID: message.messageID, decidedAt: message.timestamp))
                }
            } else {
                recent.append(respondent)
            }
        }
        let addresses = try Self.addresses(recent, connection: connection)
        let contacts = try Contacts.load(
            Set(recent.compactMap { respondent in addresses[respondent.shopperID].map { Contacts.Key(storeID: respondent.message.storeID, email: $0) } }),
            sentSince: now, connection: connection)
        // The next-sale model is ReceiptWorker's, in the same database; without its tables there is nothing to recommend.
        let modelAvailable = try ChurnStore.ordersAvailable(connection: connection)
        let histories = modelAvailable ? try PurchaseHistory.load(recent.map { ($0.message.storeID, $0.shopperID) }, connection: connection) : [:]
        let queries = recent.map { respondent in
            CandidateQuery(
                storeID: respondent.message.storeID, history: histories[respondent.shopperID] ?? [], interests: profiles[respondent.shopperID]?.interests ?? [])
        }
        let candidates = modelAvailable ? try PostgresCandidateSource(connection: connection, asOf: now).candidates(for: queries) : queries.map { _ in Candidates() }
        for (respondent, found) in zip(recent, candidates) {
            let message = respondent.message
            let settings = stores.settings(for: message.storeID)
            let subject = "survey:\(respondent.submission.surveyID)"
            let email = addresses[respondent.shopperID]
            let contact = email.flatMap { contacts[Contacts.Key(storeID: message.storeID, email: $0)] }
            let bought = Set((histories[respondent.shopperID] ?? []).flatMap { $0.products.map(\.id) })
            let products = Recommender.rank(found, excluding: bought, limit: Self.recommendationLimit)
            if products.isEmpty {
                decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: contact?.contactID, subject: subject, worker: Self.worker, recommendation: "post_survey",
                        commandID: nil, causationID: message.messageID, decidedAt: message.timestamp,
                        decision: .dropped(reason: modelAvailable ? "nothing_to_recommend" : "no_purchase_model")))
            } else {
                let command = RecommendationCommand.make(
                    context: "post_survey", storeID: message.storeID, causationID: message.messageID, key: message.shopperKey, userID: message.userID,
                    anonymousID: message.anonymousID, email: email, products: products.map(\.json), createdAt: message.timestamp,
                    topic: topics.recommendationCommands)
                commands.append(respondent.inbound.caused(command))
                decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: contact?.contactID, subject: subject, worker: Self.worker, recommendation: "post_survey",
                        commandID: command.id, causationID: message.messageID, decidedAt: message.timestamp))
            }
            guard settings.surveyAcknowledgement else { continue }
            let template = EmailTemplate.surveyAcknowledgement
            guard let contact else {
                decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: nil, subject: subject, worker: Self.worker, template: template,
                        decision: .dropped(reason: "no_address"), commandID: nil, causationID: message.messageID, decidedAt: message.timestamp))
                continue
            }
            // An answer to the shopper's own action: permission applies, the pressure caps do not.
            let decision = ConversationPolicy(settings: settings).decide(template, for: contact.permission, at: message.timestamp, direct: true, sentMarketing: [])
            var commandID: String?
            if decision == .send {
                let command = EmailCommand.make(
                    template: template, storeID: message.storeID, causationID: message.messageID, key: message.shopperKey, email: contact.email, name: nil,
                    locale: message.context["locale"]?.stringValue ?? contact.locale ?? settings.locale, settings: settings,
                    data: ["survey_id": .string(respondent.submission.surveyID)], unsubscribeToken: contact.unsubscribeToken, createdAt: message.timestamp,
                    topic: topics.emailCommands)
                commands.append(respondent.inbound.caused(command))
                commandID = command.id
            }
            decisions.append(
                ContactDecisionLog.Entry(
                    storeID: message.storeID, contactID: contact.contactID, subject: subject, worker: Self.worker, template: template, decision: decision,
                    commandID: commandID, causationID: message.messageID, decidedAt: message.timestamp))
        }
        try ContactDecisionLog.record(decisions, connection: connection)
        return commands
    }

    /// Each respondent's address: the one the survey was answered from, else the shopper's known address.
    static func addresses(_ respondents: [Respondent], connection: PostgresConnection) throws -> [Int64: String] {
        var result: [Int64: String] = [:]
        for respondent in respondents { if let email = respondent.submission.email { result[respondent.shopperID] = email.value } }
        let unknown = respondents.filter { result[$0.shopperID] == nil }
        for (shopper, known) in try ShopperResolver.known(unknown.map { ($0.message.storeID, $0.shopperID) }, connection: connection) {
            if let email = known.email { result[shopper] = email }
        }
        return result
    }
}
