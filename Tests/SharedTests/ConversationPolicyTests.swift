import Foundation
import Testing

@testable import Shared

@Suite struct ConversationPolicyTests {
    static let noon = Date(timeIntervalSince1970: 1_795_608_000)  // 2026-11-25T12:00:00Z
    static let consenting = ContactPermission(transactional: true, marketing: true)

    @Test func marketingNeedsConsentAndNoSuppressionOrErasure() {
        let policy = ConversationPolicy(settings: StoreSettings())
        func decide(_ contact: ContactPermission, _ template: EmailTemplate = .nextSale) -> ContactDecision {
            policy.decide(template, for: contact, at: Self.noon, direct: false, sentMarketing: [])
        }
        #expect(decide(Self.consenting) == .send)
        #expect(decide(ContactPermission(transactional: true)) == .suppressed(reason: "no_marketing_consent"))
        #expect(decide(ContactPermission(transactional: true), .receipt) == .send, "transactional mail needs no marketing consent")
        #expect(decide(ContactPermission()) == .suppressed(reason: "no_permission_to_email"))
        #expect(decide(ContactPermission(transactional: true, marketing: true, suppression: .marketing)) == .suppressed(reason: "unsubscribed"))
        #expect(decide(ContactPermission(transactional: true, marketing: true, suppression: .all), .receipt) == .suppressed(reason: "suppressed_all_mail"))
        #expect(decide(ContactPermission(transactional: true, marketing: true, erased: true), .receipt) == .suppressed(reason: "erased"))
        #expect(decide(ContactPermission(transactional: true, marketing: false, awaitingConfirmation: true)) == .suppressed(reason: "awaiting_confirmation"))
    }

    @Test func pressureCapsDeferOrDropByTheTemplatesOwnRule() {
        let policy = ConversationPolicy(settings: StoreSettings())
        let anHourAgo = Self.noon.addingTimeInterval(-3600)
        #expect(
            policy.decide(.nextSale, for: Self.consenting, at: Self.noon, direct: false, sentMarketing: [anHourAgo])
                == .deferred(until: anHourAgo.addingTimeInterval(86_400), reason: "pressure_cap_1_per_24h"))
        #expect(
            policy.decide(.thankYou, for: Self.consenting, at: Self.noon, direct: false, sentMarketing: [anHourAgo])
                == .dropped(reason: "pressure_cap_1_per_24h"))
        // Three in the last week, none today: the weekly cap holds it until the oldest leaves the window.
        let week = [2.0, 3.0, 4.0].map { Self.noon.addingTimeInterval(-$0 * 86_400) }
        #expect(
            policy.decide(.nextSale, for: Self.consenting, at: Self.noon, direct: false, sentMarketing: week)
                == .deferred(until: week[2].addingTimeInterval(7 * 86_400), reason: "pressure_cap_3_per_168h"))
        // A direct answer goes at once, cap or not.
        #expect(policy.decide(.welcomeOffer, for: Self.consenting, at: Self.noon, direct: true, sentMarketing: [anHourAgo]) == .send)
    }

    @Test func theHigherPriorityTemplateWinsTheBudget() {
        let policy = ConversationPolicy(settings: StoreSettings())
        let decisions = policy.decide(
            [(.walkWithMe, false), (.surveyInvite, false), (.receipt, false)], for: Self.consenting, at: Self.noon, sentMarketing: [])
        #expect(decisions[1] == .send)
        #expect(decisions[2] == .send)
        #expect(decisions[0].name == "deferred")
    }

    @Test func quietHoursDeferScheduledMarketingInTheShoppersZone() throws {
        let policy = ConversationPolicy(settings: StoreSettings())
        let lateInUTC = Date(timeIntervalSince1970: 1_795_640_400)  // 2026-11-25T21:00:00Z
        let end = try #require(policy.quietHoursEnd(at: lateInUTC, timeZone: nil))
        #expect(end == Date(timeIntervalSince1970: 1_795_680_000), "08:00 UTC the next day")
        #expect(policy.decide(.nextSale, for: Self.consenting, at: lateInUTC, direct: false, sentMarketing: []) == .deferred(until: end, reason: "quiet_hours"))
        // 21:00 UTC is 13:00 in Los Angeles: not quiet there.
        var west = Self.consenting
        west.timeZone = "America/Los_Angeles"
        #expect(policy.decide(.nextSale, for: west, at: lateInUTC, direct: false, sentMarketing: []) == .send)
        // A direct answer is not held by quiet hours.
        #expect(policy.decide(.welcomeOffer, for: Self.consenting, at: lateInUTC, direct: true, sentMarketing: []) == .send)
        // Early morning (05:00 UTC) is quiet until 08:00 the same day.
        let early = Date(timeIntervalSince1970: 1_795_582_800)
        #expect(policy.quietHoursEnd(at: early, timeZone: "UTC") == early.addingTimeInterval(3 * 3600))
    }

    @Test func settingsFileOverridesDefaultsPerStoreAndRefusesMistakesByName() throws {
        let json = #"""
            {"defaults": {"quiet_hours": {"start": "22:30", "end": "07:00"}, "pressure": [{"max": 2, "hours": 24}]},
             "stores": {"acme": {"sender": {"name": "Acme", "email": "hi@acme.test"}, "double_opt_in": true,
                                 "social_links": [{"name": "Instagram", "url": "https://instagram.com/acme"}],
                                 "loyalty_programme": {"name": "Acme Club", "url": "https://acme.test/club"},
                                 "journey": {"survey_invite_hours": 48}, "time_zone": "Europe/Paris",
                                 "stale_after_hours": 24, "signature": "Mia, founder", "survey_url": "https://acme.test/survey"}}}
            """#
        let directory = try StoreDirectory(json: Array(json.utf8), setting: "STORE_SETTINGS_FILE")
        let acme = directory.settings(for: "acme")
        #expect(acme.doubleOptIn && acme.senderName == "Acme" && acme.timeZone == "Europe/Paris")
        #expect(acme.quietHours == StoreSettings.QuietHours(start: 22 * 60 + 30, end: 7 * 60), "store inherits the file's defaults")
        #expect(acme.pressureCaps == [StoreSettings.PressureCap(count: 2, window: .seconds(86_400))])
        #expect(acme.journey.surveyInvite == .seconds(48 * 3600))
        #expect(acme.loyaltyProgramme?.name == "Acme Club")
        #expect(acme.staleAfter == .seconds(24 * 3600) && acme.signature == "Mia, founder" && acme.surveyURL == "https://acme.test/survey")
        let unknown = directory.settings(for: "elsewhere")
        #expect(!unknown.doubleOptIn && unknown.senderName == StoreSettings().senderName)
        #expect(unknown.winBack == StoreSettings.WinBack(band: .high, offerCode: nil) && !unknown.surveyAcknowledgement, "the defaults")
        let winBacks = try StoreDirectory(
            json: Array(
                #"{"stores": {"a": {"win_back": "medium", "survey_acknowledgement": true}, "b": {"win_back": {"band": "low", "offer_code": "BACK10"}}, "c": {"win_back": null}}}"#
                    .utf8),
            setting: "STORE_SETTINGS_FILE")
        #expect(winBacks.settings(for: "a").winBack?.band == .medium && winBacks.settings(for: "a").surveyAcknowledgement)
        #expect(winBacks.settings(for: "b").winBack == StoreSettings.WinBack(band: .low, offerCode: "BACK10"))
        #expect(winBacks.settings(for: "c").winBack == nil, "null turns win-backs off")
        for (bad, fragment) in [
            (#"{"defaults": {"double_opt_in": "yes"}}"#, "defaults.double_opt_in must be true or false"),
            (#"{"stores": {"x": {"quiet_hours": {"start": "25:00", "end": "07:00"}}}}"#, "stores.x.quiet_hours.start"),
            (#"{"defaults": {"colour": "red"}}"#, "defaults.colour is not a store setting"),
            (#"{"defaults": {"time_zone": "Mars/Olympus"}}"#, "defaults.time_zone is not a time zone"),
            (#"{"defaults": {"stale_after_hours": -1}}"#, "defaults.stale_after_hours must be a number"),
            (#"{"defaults": {"win_back": "urgent"}}"#, "defaults.win_back must be a band (low, medium, high)"),
            (#"{"defaults": {"win_back": {"band": "severe"}}}"#, "defaults.win_back.band must be low, medium or high"),
            (#"{"defaults": {"win_back": {"offer": "X"}}}"#, "defaults.win_back.offer is not a win-back setting"),
            (#"{"defaults": {"survey_acknowledgement": 1}}"#, "defaults.survey_acknowledgement must be true or false"),
            ("not json", "not valid JSON"),
        ] {
            let error = #expect(throws: ConfigurationError.self) { try StoreDirectory(json: Array(bad.utf8), setting: "STORE_SETTINGS_FILE") }
            #expect(error?.setting == "STORE_SETTINGS_FILE")
            #expect(error?.problem.contains(fragment) == true, "\(error?.problem ?? "")")
        }
    }

    @Test func anEventOlderThanTheStoresStaleAfterHoursStartsNoConversation() {
        var settings = StoreSettings()
        #expect(settings.staleAfter == .seconds(72 * 3600), "the contract's default")
        settings.staleAfter = .seconds(3600)
        let policy = ConversationPolicy(settings: settings)
        #expect(policy.staleness(of: Self.noon, processedAt: Self.noon.addingTimeInterval(3600)) == nil, "an hour old: still a conversation")
        #expect(policy.staleness(of: Self.noon, processedAt: Self.noon.addingTimeInterval(3601)) == .dropped(reason: "stale_event"))
        #expect(policy.staleness(of: Self.noon.addingTimeInterval(60), processedAt: Self.noon) == nil, "a clock ahead is not history")
    }

    @Test func emailsAreNormalisedAndChecked() {
        #expect(EmailAddress("  Ana.Maria@Example.COM ")?.value == "ana.maria@example.com")
        #expect(EmailAddress("ana@example") == nil, "a dotted domain")
        #expect(EmailAddress("ana@@example.com") == nil)
        #expect(EmailAddress("a na@example.com") == nil)
        #expect(EmailAddress(String(repeating: "a", count: 65) + "@example.com") == nil, "64-octet local part")
        #expect(EmailAddress("ana@example..com") == nil)
        #expect(EmailAddress("ana@example.com")?.redacted == "a***@example.com")
    }
}
