import Foundation
import Shared
import Testing

/// Batching never changes what SurveyWorker keeps or says: a seeded random stream of surveys — several per shopper,
/// answers overlapping key by key, some arriving late (older than one already applied), duplicates, consented and
/// not — fed to one worker one event per batch and to another in one batch of 2,000, gives the same commands, the
/// same responses and the same profiles.
@Suite(.serialized) struct SurveyBatchEquivalenceTests {
    static let settings = #"{"quiet_hours": null, "pressure": [], "survey_acknowledgement": true}"#

    static func stream(_ fixture: PipelineFixture) -> [KafkaOutboundMessage] {
        let events = SurveyWorkerTests.Events(fixture: fixture)
        var generator = SplitMix(state: 2_026_1207)
        let interests = ["tea", "pots", "cups", "coffee", "honey"]
        let channels = ["instagram", "email", "events", "newsletter"]
        var messages: [KafkaOutboundMessage] = []
        for shopper in 0..<40 {
            let surveys = Int.random(in: 1...5, using: &generator)
            for n in 0..<surveys {
                var answers: [String: JSONValue] = [:]
                if Bool.random(using: &generator) {
                    answers["interests"] = .array(interests.filter { _ in Bool.random(using: &generator) }.map(JSONValue.string))
                }
                if Bool.random(using: &generator) {
                    answers["channels"] = .array(channels.filter { _ in Bool.random(using: &generator) }.map(JSONValue.string))
                }
                if Bool.random(using: &generator) {
                    answers["habits"] = .object(["time": .string(["morning", "evening"].randomElement(using: &generator)!)])
                }
                if Bool.random(using: &generator) { answers["income_band"] = .string(["25-50k", "50-75k"].randomElement(using: &generator)!) }
                if Bool.random(using: &generator) { answers["mood"] = .string("calm \(n)") }
                // Minutes apart, and now and then one that arrives late: older than the survey before it.
                let minutes = Double(n * 10) - (Int.random(in: 0..<4, using: &generator) == 0 ? 25 : 0)
                let survey = events.survey(
                    "s-\(shopper)-\(n)", userID: "u-\(shopper)", email: shopper % 3 == 0 ? nil : "s\(shopper)@example.com", minutes: minutes,
                    answers: .object(answers))
                messages.append(survey)
                if Int.random(in: 0..<6, using: &generator) == 0 { messages.append(survey) }  // a duplicate publish
            }
        }
        return messages
    }

    struct Outcome: Equatable {
        var commands: [String]
        var responses: [String]
        var profiles: [String]
        var decisions: [String]
    }

    static func run(_ number: Int, batchSize: Int) async throws -> Outcome {
        try await TestEnvironment.withPipeline(number, executable: "SurveyWorker", prefix: "it-srv") { fixture in
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, Self.settings), "BATCH_SIZE": "\(batchSize)",
                "BATCH_TRANSACTIONS": "1", "SCHEDULER_ENABLED": "false", "CHURN_RESCORE_SECONDS": "0",
            ]
            // The tables first, then marketing consent for two shoppers in three (the acknowledgement is marketing),
            // then the stream, all before the worker starts.
            let migrate = try ChildProcess("SurveyWorker", ["migrate"], environment: ["DATABASE_URL": fixture.databaseURL])
            #expect(try await migrate.waitForExit() == 0, "\(migrate.stderr)")
            for shopper in 0..<40 where shopper % 3 != 0 { try await JourneySchedulerTests.consent(fixture, "s\(shopper)@example.com") }
            try await fixture.publish(Self.stream(fixture))
            try await fixture.startWorker()
            try await fixture.waitUntilConsumed()
            let user = "(SELECT min(value) FROM rapport_identities i WHERE i.store_id = t.store_id AND i.shopper_id = t.shopper_id AND i.kind = 'user_id')"
            return Outcome(
                commands: try await fixture.comparableCommands(),
                responses: try await fixture.comparableRows(
                    "SELECT concat_ws(' ', message_id, survey_id, shopper_key, answers::text, submitted_at) FROM survey_responses WHERE store_id = $1"),
                profiles: try await fixture.comparableRows(
                    """
                    SELECT concat_ws(' ', \(user), interests::text, habits::text, income_band, channels::text, other::text, responses, first_at, last_at)
                    FROM survey_profiles t WHERE store_id = $1
                    """),
                decisions: try await fixture.comparableRows(
                    """
                    SELECT concat_ws(' ', regexp_replace(subject, '[0-9]+$', 'N'), template, decision, reason, causation_id, command_id IS NOT NULL, decided_at)
                    FROM rapport_contact_decisions WHERE store_id = $1
                    """))
        }
    }

    @Test func theSameStreamInBatchesOfOneAndOfTwoThousandGivesTheSameCommandsAndRows() async throws {
        let one = try await Self.run(5, batchSize: 1)
        let many = try await Self.run(7, batchSize: 2000)
        #expect(one.commands == many.commands, "commands: \(Set(one.commands).symmetricDifference(many.commands))")
        #expect(one.responses == many.responses, "responses: \(Set(one.responses).symmetricDifference(many.responses))")
        #expect(one.profiles == many.profiles, "profiles: \(Set(one.profiles).symmetricDifference(many.profiles))")
        #expect(one.decisions == many.decisions, "decisions: \(Set(one.decisions).symmetricDifference(many.decisions))")
        #expect(many.profiles.count == 40 && many.responses.count > 60, "\(many.profiles.count) profiles, \(many.responses.count) responses")
        #expect(many.commands.contains { $0.contains(#""template":"survey_acknowledgement""#) }, "the stream must make the worker speak")
    }
}
