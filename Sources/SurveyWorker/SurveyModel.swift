import Foundation
import InboundEvents
import NextSale
import Shared

/// What a batch of survey submissions decides once its responses are stored and each respondent's profile derived
/// again: the preferences every worker acts on, the walk-with-me steps that can no longer invite anywhere, and for
/// each recent survey the `post_survey` recommendation and the acknowledgement. ``SurveyHandler`` loads what it reads
/// and writes ``Output`` afterwards. Pure: no I/O, so that its rules are tested directly.
struct SurveyModel {
    /// A submission of the batch with the shopper it resolved to.
    struct Respondent {
        var event: SurveyEvent
        var submission: SurveyEvent.Submission
        /// Where the submission's message was read: its commands carry it.
        var source: MessagePosition
        var shopperID: Int64 = 0
        var message: SegmentMessage { event.message }
    }

    /// What the batch writes and sends, in the order ``SurveyHandler`` writes it.
    struct Output {
        /// Each respondent's preferences, by shopper id.
        var preferences: [(store: String, shopperID: Int64, preferences: ShopperPreferences)] = []
        /// The shoppers whose pending walk-with-me is dropped (`no_chosen_channels`).
        var walkWithMeDropped: [(store: String, shopperID: Int64)] = []
        /// The decisions about recommendations and acknowledgements, as recorded.
        var decisions: [ContactDecisionLog.Entry] = []
        /// For each recent survey in the batch's order, its recommendation, then its acknowledgement.
        var commands: [OutboundCommand] = []
    }

    /// How many products a `post_survey` recommendation lists.
    static let recommendationLimit = 10
    /// The worker named in every decision it records.
    static let worker = "SurveyWorker"
    /// The recommendation's context.
    static let recommendation = "post_survey"

    let stores: StoreDirectory
    let topics: Topics
    /// What "now" is for history-is-not-a-conversation.
    let processedAt: Date
    /// The batch's submissions, in its order, with their shoppers.
    let respondents: [Respondent]
    /// Each respondent's profile, derived from all their stored responses, by shopper id.
    let profiles: [Int64: Profile]
    /// The respondents whose survey is recent: history is not a conversation, an old survey shapes the profile and
    /// says nothing.
    let recent: [Respondent]

    /// The batch's submissions, in its order (other events change nothing).
    static func respondents(_ events: [(event: SurveyEvent, source: MessagePosition)]) -> [Respondent] {
        events.compactMap { event, source in
            guard case .submitted(let submission) = event.action else { return nil }
            return Respondent(event: event, submission: submission, source: source)
        }
    }

    /// The respondents' shoppers, by shopper id: whose profiles are derived again.
    static func shoppers(_ respondents: [Respondent]) -> [(store: String, shopperID: Int64)] {
        var shoppers: [Int64: String] = [:]  // shopper → store
        for respondent in respondents { shoppers[respondent.shopperID] = respondent.message.storeID }
        return shoppers.sorted { $0.key < $1.key }.map { (store: $0.value, shopperID: $0.key) }
    }

    init(stores: StoreDirectory, topics: Topics, processedAt: Date, respondents: [Respondent], profiles: [Int64: Profile]) {
        self.stores = stores
        self.topics = topics
        self.processedAt = processedAt
        self.respondents = respondents
        self.profiles = profiles
        recent = respondents.filter { respondent in
            ConversationPolicy(settings: stores.settings(for: respondent.message.storeID)).staleness(of: respondent.message.timestamp, processedAt: processedAt)
                == nil
        }
    }

    /// The candidate query of each of ``recent``, in its order: the shopper's purchase history (`histories`, by
    /// shopper id) and the interests their profile states.
    func candidateQueries(histories: [Int64: [PurchasedOrder]]) -> [CandidateQuery] {
        recent.map { respondent in
            CandidateQuery(
                storeID: respondent.message.storeID, history: histories[respondent.shopperID] ?? [], interests: profiles[respondent.shopperID]?.interests ?? [],
                shopperID: respondent.shopperID)
        }
    }

    /// What the batch writes and sends, given for ``recent`` each shopper's address (`addresses`, by shopper id) and
    /// its contact, whether ReceiptWorker's next-sale model is in the database, the purchase histories (by shopper id)
    /// and the candidates of ``candidateQueries(histories:)`` (in its order).
    func apply(
        addresses: [Int64: String], contacts: [Contacts.Key: Contacts.Contact], modelAvailable: Bool, histories: [Int64: [PurchasedOrder]],
        candidates: [Candidates]
    ) -> Output {
        var output = Output()
        output.preferences = Self.shoppers(respondents).compactMap { key in
            profiles[key.shopperID].map { (key.store, key.shopperID, ShopperPreferences(interests: $0.interests ?? [], channels: $0.channels)) }
        }
        output.walkWithMeDropped = walkWithMeDropped()
        converse(addresses: addresses, contacts: contacts, modelAvailable: modelAvailable, histories: histories, candidates: candidates, into: &output)
        return output
    }

    /// A shopper who chose channels, none of which the store's walk-with-me could invite to, will not get it: their
    /// pending step is dropped now, with its reason. (Otherwise the step invites to the chosen channels when it is
    /// sent: ReceiptWorker reads ``ShopperPreferences``.) Old surveys count too: this is state, not a conversation.
    private func walkWithMeDropped() -> [(store: String, shopperID: Int64)] {
        struct ShopperKey: Hashable {
            var store: String
            var shopperID: Int64
        }
        var nothing: [(store: String, shopperID: Int64)] = []
        var seen = Set<ShopperKey>()
        for respondent in respondents where respondent.submission.answers["channels"] != nil {
            let store = respondent.message.storeID
            guard let chosen = profiles[respondent.shopperID]?.channels, stores.settings(for: store).walkWithMeChannels(chosen: chosen).isEmpty,
                seen.insert(ShopperKey(store: store, shopperID: respondent.shopperID)).inserted
            else { continue }
            nothing.append((store, respondent.shopperID))
        }
        return nothing
    }

    /// The `post_survey` recommendation and the acknowledgement of each recent survey; the decision not to, of each old one.
    private func converse(
        addresses: [Int64: String], contacts: [Contacts.Key: Contacts.Contact], modelAvailable: Bool, histories: [Int64: [PurchasedOrder]],
        candidates: [Candidates], into output: inout Output
    ) {
        for respondent in respondents {
            let message = respondent.message
            let settings = stores.settings(for: message.storeID)
            guard let stale = ConversationPolicy(settings: settings).staleness(of: message.timestamp, processedAt: processedAt) else { continue }
            output.decisions.append(
                ContactDecisionLog.Entry(
                    storeID: message.storeID, contactID: nil, subject: Self.subject(respondent), worker: Self.worker, recommendation: Self.recommendation,
                    commandID: nil, causationID: message.messageID, decidedAt: message.timestamp, decision: stale))
            if settings.surveyAcknowledgement {
                output.decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: nil, subject: Self.subject(respondent), worker: Self.worker, template: .surveyAcknowledgement,
                        decision: stale, commandID: nil, causationID: message.messageID, decidedAt: message.timestamp))
            }
        }
        for (respondent, found) in zip(recent, candidates) {
            let message = respondent.message
            let settings = stores.settings(for: message.storeID)
            let subject = Self.subject(respondent)
            let email = addresses[respondent.shopperID]
            let contact = email.flatMap { contacts[Contacts.Key(storeID: message.storeID, email: $0)] }
            let bought = Set((histories[respondent.shopperID] ?? []).flatMap { $0.products.map(\.id) })
            let products = Recommender.rank(found, excluding: bought, limit: Self.recommendationLimit)
            if products.isEmpty {
                output.decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: contact?.contactID, subject: subject, worker: Self.worker, recommendation: Self.recommendation,
                        commandID: nil, causationID: message.messageID, decidedAt: message.timestamp,
                        decision: .dropped(reason: modelAvailable ? "nothing_to_recommend" : "no_purchase_model")))
            } else {
                let command = RecommendationCommand.make(
                    context: Self.recommendation, storeID: message.storeID, causationID: message.messageID, key: message.shopperKey, userID: message.userID,
                    anonymousID: message.anonymousID, email: email, products: products.map(\.json), createdAt: message.timestamp,
                    topic: topics.recommendationCommands)
                output.commands.append(command.caused(by: respondent.source))
                output.decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: contact?.contactID, subject: subject, worker: Self.worker, recommendation: Self.recommendation,
                        commandID: command.id, causationID: message.messageID, decidedAt: message.timestamp))
            }
            guard settings.surveyAcknowledgement else { continue }
            let template = EmailTemplate.surveyAcknowledgement
            guard let contact else {
                output.decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: nil, subject: subject, worker: Self.worker, template: template,
                        decision: .dropped(reason: "no_address"), commandID: nil, causationID: message.messageID, decidedAt: message.timestamp))
                continue
            }
            // An answer to the shopper's own action: permission applies, the pressure caps do not.
            let decision = ConversationPolicy(settings: settings).decide(
                template, for: contact.permission, at: message.timestamp, direct: true, sentMarketing: [])
            var commandID: String?
            if decision == .send {
                let command = EmailCommand.make(
                    template: template, storeID: message.storeID, causationID: message.messageID, key: message.shopperKey, email: contact.email, name: nil,
                    locale: message.context["locale"]?.stringValue ?? contact.locale ?? settings.locale, settings: settings,
                    data: ["survey_id": .string(respondent.submission.surveyID)], unsubscribeToken: contact.unsubscribeToken, createdAt: message.timestamp,
                    topic: topics.emailCommands)
                output.commands.append(command.caused(by: respondent.source))
                commandID = command.id
            }
            output.decisions.append(
                ContactDecisionLog.Entry(
                    storeID: message.storeID, contactID: contact.contactID, subject: subject, worker: Self.worker, template: template, decision: decision,
                    commandID: commandID, causationID: message.messageID, decidedAt: message.timestamp))
        }
    }

    /// How decisions name a survey.
    static func subject(_ respondent: Respondent) -> String { "survey:\(respondent.submission.surveyID)" }
}
