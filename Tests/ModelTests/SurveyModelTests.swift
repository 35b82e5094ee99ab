import Foundation
import InboundEvents
import NextSale
import Shared
import Testing

@testable import SurveyWorker

/// SurveyWorker's rules once a batch's responses are stored and profiles derived: preferences, the walk-with-me's
/// channels, and the conversation of recent surveys (the handler resolves, stores and loads; these feed the model).
@Suite struct SurveyModelTests {
    static let store = "shop"
    static let ana = "ana@example.com"
    static let start = Date(timeIntervalSince1970: 1_795_586_400)  // 2026-11-25T06:00:00Z

    /// A `Survey Submitted` event of `user`, `minutes` after ``start``.
    static func submitted(_ survey: String, _ answers: [String: JSONValue], minutes: Double = 0, email: String? = ana, user: String = "u-1") -> SurveyEvent {
        var properties: [String: JSONValue] = ["survey_id": .string(survey), "answers": .object(answers)]
        if let email { properties["email"] = .string(email) }
        let message = SegmentMessage(
            kind: .track, messageID: "m-\(survey)-\(user)", timestamp: start.addingTimeInterval(minutes * 60), userID: user, anonymousID: nil, storeID: store,
            event: "Survey Submitted", properties: properties, traits: [:], context: [:])
        return try! SurveyEvent(message)
    }

    static func other(minutes: Double = 0) -> SurveyEvent {
        try! SurveyEvent(
            SegmentMessage(
                kind: .track, messageID: "m-page-\(minutes)", timestamp: start.addingTimeInterval(minutes * 60), userID: "u-1", anonymousID: nil,
                storeID: store,
                event: "Page Viewed", properties: [:], traits: [:], context: [:]))
    }

    /// The respondents of `events` (read at offsets 0, 1, …), resolved to `shoppers` in order.
    static func respondents(_ events: [SurveyEvent], shoppers: [Int64]) -> [SurveyModel.Respondent] {
        var respondents = SurveyModel.respondents(
            events.enumerated().map { ($1, MessagePosition(topicPartition: TopicPartition(topic: "survey-events", partition: 0), offset: Int64($0))) })
        for index in respondents.indices { respondents[index].shopperID = shoppers[index] }
        return respondents
    }

    static func profile(_ answers: [String: JSONValue]...) throws -> Profile {
        Profile(try answers.map { try Profile.Answers($0) })
    }

    static func stores(acknowledging: Bool) -> StoreDirectory {
        try! StoreDirectory(json: Array(#"{"defaults": {"survey_acknowledgement": \#(acknowledging)}}"#.utf8), setting: "TEST")
    }

    static func model(_ respondents: [SurveyModel.Respondent], profiles: [Int64: Profile], acknowledging: Bool = false, processedAt: Date? = nil) -> SurveyModel
    {
        SurveyModel(
            stores: stores(acknowledging: acknowledging), topics: Topics(), processedAt: processedAt ?? start.addingTimeInterval(3600),
            respondents: respondents,
            profiles: profiles)
    }

    static func contact() -> (Contacts.Key, Contacts.Contact) {
        var contact = Contacts.Contact(contactID: 7, storeID: store, email: ana, unsubscribeToken: "unsub-7")
        contact.permission.transactional = true
        contact.permission.marketing = true
        return (Contacts.Key(storeID: store, email: ana), contact)
    }

    @Test func onlySubmissionsAnswerAndEachShopperIsDerivedOnce() {
        let respondents = Self.respondents(
            [Self.submitted("s1", [:]), Self.other(), Self.submitted("s2", [:], minutes: 1), Self.submitted("s3", [:], user: "u-2")], shoppers: [4, 4, 2])
        #expect(respondents.map(\.submission.surveyID) == ["s1", "s2", "s3"])
        #expect(respondents.map(\.source.offset) == [0, 2, 3], "each keeps the position of its own message")
        #expect(SurveyModel.shoppers(respondents).map { "\($0.store)/\($0.shopperID)" } == ["shop/2", "shop/4"])
    }

    @Test func preferencesFollowTheProfileAndAWalkWithMeWithNoChosenChannelIsDroppedOnce() throws {
        let respondents = Self.respondents(
            [
                Self.submitted("s1", ["channels": .array([.string("instagram")])]),
                Self.submitted("s2", ["channels": .array([.string("instagram")]), "interests": .array([.string("tea")])], minutes: 1),
                Self.submitted("s3", ["interests": .array([.string("cups")])], user: "u-2"),
            ], shoppers: [4, 4, 2])
        let profiles: [Int64: Profile] = [
            4: try Self.profile(["channels": .array([.string("instagram")]), "interests": .array([.string("tea")])]),
            // Channels chosen in an earlier survey: this one does not speak of them, so the step is left as it is.
            2: try Self.profile(["channels": .array([.string("instagram")])], ["interests": .array([.string("cups")])]),
        ]
        let output = Self.model(respondents, profiles: profiles).apply(addresses: [:], contacts: [:], modelAvailable: true, histories: [:], candidates: [])
        #expect(
            output.preferences.map { "\($0.shopperID) \($0.preferences.interests) \($0.preferences.channels ?? [])" } == [
                "2 [\"cups\"] [\"instagram\"]", "4 [\"tea\"] [\"instagram\"]",
            ])
        #expect(output.walkWithMeDropped.map { "\($0.store)/\($0.shopperID)" } == ["shop/4"], "a store without channels: nothing to invite to")
    }

    @Test func anOldSurveyShapesTheProfileAndSaysNothing() throws {
        let respondents = Self.respondents([Self.submitted("s1", ["interests": .array([.string("tea")])])], shoppers: [4])
        let model = Self.model(
            respondents, profiles: [4: try Self.profile(["interests": .array([.string("tea")])])], acknowledging: true,
            processedAt: Self.start.addingTimeInterval(4 * 86_400))
        #expect(model.recent.isEmpty && model.candidateQueries(histories: [:]).isEmpty)
        let (key, contact) = Self.contact()
        let output = model.apply(addresses: [4: Self.ana], contacts: [key: contact], modelAvailable: true, histories: [:], candidates: [])
        #expect(output.commands.isEmpty && output.preferences.map(\.preferences.interests) == [["tea"]])
        #expect(output.decisions.map(\.name) == ["recommend:post_survey", "survey_acknowledgement"])
        #expect(
            output.decisions.allSatisfy { $0.decision == .dropped(reason: ConversationPolicy.staleEvent) && $0.contactID == nil && $0.subject == "survey:s1" })
    }

    @Test func aRecentSurveyIsRecommendedFromAndAcknowledgedWhereTheShopperHasAnAddress() throws {
        let respondents = Self.respondents(
            [Self.submitted("s1", ["interests": .array([.string("tea")])]), Self.submitted("s2", [:], email: nil, user: "u-2")], shoppers: [4, 2])
        let model = Self.model(respondents, profiles: [4: try Self.profile(["interests": .array([.string("tea")])])], acknowledging: true)
        let bought = PurchasedOrder(orderID: "o1", placedAt: Self.start.addingTimeInterval(-86_400), products: [.init(id: "A", category: nil)])
        let queries = model.candidateQueries(histories: [4: [bought]])
        #expect(queries.map(\.interests) == [["tea"], []] && queries.map(\.seeds) == [["A": 1], [:]])
        var found = Candidates()
        found.together = [("A", 2), ("B", 1)]
        let (key, contact) = Self.contact()
        let output = model.apply(
            addresses: [4: Self.ana], contacts: [key: contact], modelAvailable: true, histories: [4: [bought]], candidates: [found, Candidates()])
        #expect(output.commands.map(\.name) == ["recommend:post_survey", "survey_acknowledgement"])
        #expect(output.commands.allSatisfy { $0.source?.offset == 0 })
        let products = try #require(try JSONValue.parse(output.commands[0].value[...])["products"]?.arrayValue)
        #expect(products.compactMap { $0["product_id"]?.stringValue } == ["B"], "what they bought is not recommended")
        #expect(
            output.decisions.map { "\($0.subject) \($0.name) \($0.decision) \($0.contactID.map(String.init) ?? "-")" } == [
                "survey:s1 recommend:post_survey \(ContactDecision.send) 7", "survey:s1 survey_acknowledgement \(ContactDecision.send) 7",
                "survey:s2 recommend:post_survey \(ContactDecision.dropped(reason: "nothing_to_recommend")) -",
                "survey:s2 survey_acknowledgement \(ContactDecision.dropped(reason: "no_address")) -",
            ])

        let withoutModel = model.apply(
            addresses: [4: Self.ana], contacts: [key: contact], modelAvailable: false, histories: [:], candidates: [Candidates(), Candidates()])
        #expect(withoutModel.commands.map(\.name) == ["survey_acknowledgement"], "the acknowledgement does not wait for the model")
        #expect(
            withoutModel.decisions.filter { $0.name == "recommend:post_survey" }.map(\.decision) == [
                .dropped(reason: "no_purchase_model"), .dropped(reason: "no_purchase_model"),
            ])
    }
}
