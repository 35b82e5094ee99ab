import Foundation
import InboundEvents
import Shared
import Testing

@testable import CaptureWorker

/// Property: over random sequences of capture, consent, confirmation, checkout, unsubscribe, spam, bounce, browse and
/// erasure events, under random store settings, no marketing command is ever emitted for a shopper without current
/// consent. Current consent is judged by an oracle written from the rules' statement, not from the model's code.
@Suite struct ConsentPropertyTests {

    enum Step: Equatable, CustomStringConvertible {
        case capture(marketing: Bool?, level: String, offer: Bool)
        case confirmed, checkout, unsubscribe, spam, softBounce, hardBounce, viewed, erasure

        var description: String {
            switch self {
            case .capture(let marketing, let level, let offer): "capture(\(marketing.map(String.init) ?? "-"),\(level)\(offer ? ",offer" : ""))"
            case .confirmed: "confirmed"
            case .checkout: "checkout"
            case .unsubscribe: "unsubscribe"
            case .spam: "spam"
            case .softBounce: "soft"
            case .hardBounce: "hard"
            case .viewed: "viewed"
            case .erasure: "erasure"
            }
        }

        static func random(using generator: inout SplitMix) -> Step {
            switch Int.random(in: 0..<100, using: &generator) {
            case 0..<30:
                .capture(
                    marketing: [true, true, false, nil].randomElement(using: &generator)!, level: ["single", "confirmed", "unknown"].randomElement(using: &generator)!,
                    offer: Bool.random(using: &generator))
            case 30..<42: .confirmed
            case 42..<52: .checkout
            case 52..<60: .unsubscribe
            case 60..<64: .spam
            case 64..<76: .softBounce
            case 76..<79: .hardBounce
            case 79..<98: .viewed
            default: .erasure
            }
        }

        func event(index: Int) -> CaptureEvent {
            let email: JSONValue = .string(CaptureModelTests.email)
            let minutes = Double(index) * 7
            let id = "s\(index)"
            return switch self {
            case .capture(let marketing, let level, let offer):
                CaptureModelTests.capture(marketing: marketing, level: level, offer: offer ? "HELLO" : nil, minutes: minutes, id: id)
            case .confirmed: CaptureModelTests.track("Email Confirmed", ["email": email, "token": .string("token-1")], minutes: minutes, id: id)
            case .checkout: CaptureModelTests.track("Checkout Started", ["email": email], minutes: minutes, id: id)
            case .unsubscribe: CaptureModelTests.track("Unsubscribed", ["email": email], minutes: minutes, id: id)
            case .spam: CaptureModelTests.track("Email Marked as Spam", ["email": email], minutes: minutes, id: id)
            case .softBounce: CaptureModelTests.track("Email Bounced", ["email": email, "bounce_type": .string("soft")], minutes: minutes, id: id)
            case .hardBounce: CaptureModelTests.track("Email Bounced", ["email": email, "bounce_type": .string("hard")], minutes: minutes, id: id)
            case .viewed: CaptureModelTests.track("Product Viewed", ["product_id": .string("p-\(index % 5)")], minutes: minutes, id: id)
            case .erasure: CaptureModelTests.track("Erasure Requested", ["email": email], minutes: minutes, id: id)
            }
        }
    }

    /// Whether marketing is permitted after `steps` (all of them applied), from the rules as the issue states them:
    /// consent must have been given after the last withdrawal — explicitly (a capture with marketing consent,
    /// confirmed where the store asks for double opt-in) or by soft opt-in on an email-first checkout where the store
    /// uses it and no consent was ever recorded — and nothing may have ended mail for good (hard bounce, seven soft
    /// bounces in a row). An erasure ends the shopper: only what follows it counts, as a new shopper's story.
    static func oraclePermitsMarketing(_ steps: [Step], doubleOptIn: Bool, softOptIn: Bool) -> Bool {
        // An erasure ends the shopper: whatever came before it is gone, and what follows is a new shopper's story.
        if let erasure = steps.lastIndex(of: .erasure) {
            return erasure < steps.index(before: steps.endIndex)
                && oraclePermitsMarketing(Array(steps[(erasure + 1)...]), doubleOptIn: doubleOptIn, softOptIn: softOptIn)
        }
        var softStreak = 0
        for step in steps {
            switch step {
            case .hardBounce: return false
            case .softBounce:
                softStreak += 1
                if softStreak >= 7 { return false }
            case .confirmed: softStreak = 0
            default: break
            }
        }
        let withdrawal = steps.lastIndex { step in
            switch step {
            case .unsubscribe, .spam: true
            case .capture(let marketing, _, _): marketing == false
            default: false
            }
        }
        let after = withdrawal.map { steps.index(after: $0) } ?? steps.startIndex
        var consented = false
        var awaiting = false
        for (index, step) in steps.enumerated() where index >= after {
            switch step {
            case .capture(true, let level, _):
                if level == "confirmed" || !doubleOptIn || consented { consented = true } else { awaiting = true }
            case .confirmed where awaiting:
                consented = true
            case .checkout:
                let everRecorded = steps[..<index].contains { if case .capture(.some, _, _) = $0 { true } else { false } }
                if softOptIn, withdrawal == nil, !everRecorded { consented = true }
            default: break
            }
        }
        return consented
    }

    @Test func noMarketingCommandWithoutCurrentConsent() {
        var marketingSent = 0
        var welcomes = 0
        var welcomesSent = 0
        for seed in UInt64(1)...3000 {
            var generator = SplitMix(state: seed)
            var settings = StoreSettings()
            settings.doubleOptIn = Bool.random(using: &generator)
            settings.softOptIn = Bool.random(using: &generator)
            var model = CaptureModelTests.model(settings)
            let steps = (0..<Int.random(in: 1...25, using: &generator)).map { _ in Step.random(using: &generator) }
            for (index, step) in steps.enumerated() {
                let before = model.commands.count
                model.apply(step.event(index: index), shopperID: 1)
                let new = model.commands[before...].filter { $0.topic == "email-commands" }
                for command in new where EmailTemplate.all.first(where: { $0.name == command.name })?.category == .marketing {
                    marketingSent += 1
                    welcomes += command.name == "welcome_offer" ? 1 : 0
                    let permitted = Self.oraclePermitsMarketing(Array(steps[...index]), doubleOptIn: settings.doubleOptIn, softOptIn: settings.softOptIn)
                    #expect(permitted, "seed \(seed): \(command.name) after \(steps[...index]) (double opt-in \(settings.doubleOptIn), soft \(settings.softOptIn))")
                }
            }
            // One sequence is one shopper: at most one welcome offer, ever.
            #expect(welcomes <= 1, "seed \(seed): \(welcomes) welcome offers to one shopper after \(steps)")
            welcomesSent += welcomes
            welcomes = 0
        }
        // The property is only meaningful if marketing was actually sent in many sequences.
        #expect(marketingSent > 300, "marketing commands emitted over all sequences: \(marketingSent)")
        #expect(welcomesSent > 100, "welcome offers over all sequences: \(welcomesSent)")
    }
}
