import Churn
import Foundation
import InboundEvents
import NextSale
import Shared

/// SurveyWorker's behaviour: for a batch of `survey-events`, store each response as given (append-only), derive each
/// respondent's profile again from all their responses and publish what every worker acts on (interests, channels:
/// ``ShopperPreferences``); adapt the shopper's pending walk-with-me to the channels they chose; and for each recent
/// survey, a `post_survey` recommendation from their stated interests and the next-sale model, and an
/// acknowledgement where the store enables it. It records the responses and profiles, loads what the conversation
/// reads, applies ``SurveyModel`` and writes the model's ``SurveyModel/Output``.
struct SurveyHandler: PipelineHandler {
    let stores: StoreDirectory
    let topics: Topics
    /// The batch's clock: what "now" is for history-is-not-a-conversation.
    let clock: @Sendable () -> Date

    /// The worker named in every decision it records (``SurveyModel/worker``).
    static let worker = SurveyModel.worker

    init(stores: StoreDirectory, topics: Topics, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.stores = stores
        self.topics = topics
        self.clock = clock
    }

    func decode(_ message: SegmentMessage) throws(DecodeFailure) -> SurveyEvent {
        try SurveyEvent(message)
    }

    func handle(_ events: [InboundEvent<SurveyEvent>], connection: PostgresConnection) throws -> [OutboundCommand] {
        var respondents = SurveyModel.respondents(events.map { ($0.event, $0.source.position) })
        guard !respondents.isEmpty else { return [] }
        let resolution = try ShopperResolver.resolve(respondents.map { ($0.message.storeID, $0.event.identities) }, connection: connection)
        for index in respondents.indices { respondents[index].shopperID = resolution.shoppers[index] }

        // The responses as given, and each respondent's profile derived again from all of them, this batch's among them.
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
        let profiles = try ProfileStore.derive(SurveyModel.shoppers(respondents), connection: connection)

        // Load what the conversation of the recent surveys reads.
        let now = clock()
        let model = SurveyModel(stores: stores, topics: topics, processedAt: now, respondents: respondents, profiles: profiles)
        let recent = model.recent
        let addresses = try Self.addresses(recent, connection: connection)
        let contacts = try Contacts.load(
            Set(recent.compactMap { respondent in addresses[respondent.shopperID].map { Contacts.Key(storeID: respondent.message.storeID, email: $0) } }),
            sentSince: now, connection: connection)
        // The next-sale model is ReceiptWorker's, in the same database; without its tables there is nothing to recommend.
        let modelAvailable = try ChurnStore.ordersAvailable(connection: connection)
        let histories = modelAvailable ? try PurchaseHistory.load(recent.map { ($0.message.storeID, $0.shopperID) }, connection: connection) : [:]
        let queries = model.candidateQueries(histories: histories)
        let candidates =
            modelAvailable ? try PostgresCandidateSource(connection: connection, asOf: now).candidates(for: queries) : queries.map { _ in Candidates() }

        let output = model.apply(addresses: addresses, contacts: contacts, modelAvailable: modelAvailable, histories: histories, candidates: candidates)

        try ShopperPreferences.store(output.preferences, connection: connection)
        let dropped = output.walkWithMeDropped
        if !dropped.isEmpty {
            try StepStore.cancel(
                where:
                    "(store_id, shopper_id) IN (SELECT * FROM unnest(\(PostgresArray(dropped.map(\.store)))::text[], \(PostgresArray(dropped.map(\.shopperID)))::bigint[]))",
                templates: [EmailTemplate.walkWithMe.name], reason: "no_chosen_channels", as: .dropped, connection: connection)
        }
        try ContactDecisionLog.record(output.decisions, connection: connection)
        return output.commands
    }

    /// Each respondent's address: the one the survey was answered from, else the shopper's known address.
    static func addresses(_ respondents: [SurveyModel.Respondent], connection: PostgresConnection) throws -> [Int64: String] {
        var result: [Int64: String] = [:]
        for respondent in respondents { if let email = respondent.submission.email { result[respondent.shopperID] = email.value } }
        let unknown = respondents.filter { result[$0.shopperID] == nil }
        for (shopper, known) in try ShopperResolver.known(unknown.map { ($0.message.storeID, $0.shopperID) }, connection: connection) {
            if let email = known.email { result[shopper] = email }
        }
        return result
    }
}
