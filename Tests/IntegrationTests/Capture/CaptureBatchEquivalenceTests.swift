import Foundation
import Shared
import Testing

/// Batching never changes what CaptureWorker decides: the same random stream of captures, consents, confirmations,
/// checkouts, unsubscribes, re-subscribes, spam reports, bounces, browsing and erasures — each shopper's events minutes
/// apart, so that a batch of 2,000 holds a shopper's whole story — fed to one worker one event per batch and to
/// another in one batch of 2,000, gives the same commands and the same rows. (It found that events after an erasure in
/// the same batch were dropped, where one at a time they begin a new shopper.)
@Suite(.serialized) struct CaptureBatchEquivalenceTests {
    /// What a fixture's worker did, with the store's name, command ids and the random tokens taken out.
    struct Outcome: Equatable {
        var commands: [String]
        var contacts: [String]
        var decisions: [String]
        var ledger: [String]
        var interests: [String]
        var timeline: [String]
    }

    static func outcome(_ fixture: PipelineFixture) async throws -> Outcome {
        try await fixture.waitUntilConsumed()
        // Shoppers by their anonymous id, not by the id the database gave them (a decision's subject names the shopper's
        // id: its causation says whose it is).
        let shopper = "(SELECT min(value) FROM rapport_identities i WHERE i.store_id = t.store_id AND i.shopper_id = t.shopper_id AND i.kind = 'anonymous_id')"
        return Outcome(
            commands: try await fixture.comparableCommands(),
            contacts: try await fixture.comparableRows(
                """
                SELECT concat_ws(' ', email, transactional_ok, marketing_consent, consent_level, awaiting_confirmation, suppression,
                                 soft_bounce_streak, erased_at IS NOT NULL)
                FROM rapport_contacts WHERE store_id = $1
                """),
            decisions: try await fixture.comparableRows(
                """
                SELECT concat_ws(' ', regexp_replace(subject, '[0-9]+$', 'N'), template, decision, reason, causation_id, command_id IS NOT NULL, decided_at)
                FROM rapport_contact_decisions WHERE store_id = $1
                """),
            ledger: try await fixture.comparableRows(
                "SELECT concat_ws(' ', \(shopper), message_id, kind, marketing, source, opt_in_level) FROM capture_consent_ledger t WHERE store_id = $1"),
            interests: try await fixture.comparableRows(
                "SELECT concat_ws(' ', \(shopper), kind, item, views, adds, last_at) FROM capture_interests t WHERE store_id = $1"),
            timeline: try await fixture.comparableRows(
                "SELECT concat_ws(' ', \(shopper), message_id, event, occurred_at) FROM capture_timeline t WHERE store_id = $1"))
    }

    static func run(_ number: Int, batchSize: Int, keepErasureHash: Bool) async throws -> Outcome {
        try await TestEnvironment.withPipeline(number, executable: "CaptureWorker", prefix: "it-cap") { fixture in
            let settings = #"{"quiet_hours": null, "pressure": [], "double_opt_in": true, "keep_erasure_hash": \#(keepErasureHash)}"#
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, settings), "BATCH_SIZE": "\(batchSize)",
                "BATCH_TRANSACTIONS": "1", "ERASURE_HASH_SALT": "a-test-salt-of-some-length",
            ]
            // Everything waits on the topic before the worker starts: with 2,000, its first poll takes the whole stream.
            let (messages, _) = CaptureWorkerTests.randomConsentStream(CaptureWorkerTests.Events(fixture: fixture), shoppers: 80, seed: 7_2026)
            try await fixture.publish(messages)
            try await fixture.startWorker()
            return try await Self.outcome(fixture)
        }
    }

    /// With and without `keep_erasure_hash`: a store that keeps erased addresses refuses the address's later events,
    /// one that does not begins a new shopper with them.
    @Test(arguments: [false, true])
    func theSameStreamInBatchesOfOneAndOfTwoThousandGivesTheSameCommandsAndRows(keepErasureHash: Bool) async throws {
        let one = try await Self.run(keepErasureHash ? 16 : 14, batchSize: 1, keepErasureHash: keepErasureHash)
        let many = try await Self.run(keepErasureHash ? 17 : 15, batchSize: 2000, keepErasureHash: keepErasureHash)
        #expect(one.commands == many.commands, "commands: \(Set(one.commands).symmetricDifference(many.commands))")
        #expect(one.contacts == many.contacts, "contacts: \(Set(one.contacts).symmetricDifference(many.contacts))")
        #expect(one.decisions == many.decisions, "decisions: \(Set(one.decisions).symmetricDifference(many.decisions))")
        #expect(one.ledger == many.ledger, "ledger: \(Set(one.ledger).symmetricDifference(many.ledger))")
        #expect(one.interests == many.interests, "interests: \(Set(one.interests).symmetricDifference(many.interests))")
        #expect(one.timeline == many.timeline, "timeline: \(Set(one.timeline).symmetricDifference(many.timeline))")
        // The stream must exercise what batching could change: welcomes, confirmations, suppressions and erasures.
        #expect(many.commands.count { $0.contains(#""template":"welcome_offer""#) } >= 3, "\(many.commands.count) commands")
        #expect(many.commands.contains { $0.contains(#""template":"confirm_subscription""#) })
        #expect(many.contacts.contains { $0.hasSuffix(" t") }, "an erased contact")
        #expect(many.timeline.count > 400, "\(many.timeline.count) events applied")
        #expect(many.decisions.contains { $0.contains(" suppressed ") || $0.contains(" dropped ") })
    }
}
