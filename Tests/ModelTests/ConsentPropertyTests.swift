import ConsentScenarios
import Foundation
import InboundEvents
import Shared
import Testing

@testable import CaptureWorker

/// Property: over random sequences of capture, consent, confirmation, checkout, unsubscribe, spam, bounce, browse and
/// erasure events, under random store settings, no marketing command is ever emitted for a shopper without current
/// consent. Current consent is judged by an oracle written from the rules' statement, not from the model's code.
@Suite struct ConsentPropertyTests {

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
            let steps = (0..<Int.random(in: 1...25, using: &generator)).map { _ in ConsentStep.random(using: &generator) }
            for (index, step) in steps.enumerated() {
                let before = model.commands.count
                model.apply(step.event(index: index), shopperID: 1)
                let new = model.commands[before...].filter { $0.topic == "email-commands" }
                for command in new where EmailTemplate.all.first(where: { $0.name == command.name })?.category == .marketing {
                    marketingSent += 1
                    welcomes += command.name == "welcome_offer" ? 1 : 0
                    let permitted = ConsentStep.oraclePermitsMarketing(Array(steps[...index]), doubleOptIn: settings.doubleOptIn, softOptIn: settings.softOptIn)
                    #expect(
                        permitted, "seed \(seed): \(command.name) after \(steps[...index]) (double opt-in \(settings.doubleOptIn), soft \(settings.softOptIn))")
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

extension ConsentStep {
    /// The step as the event CaptureModel is fed, seven minutes after the one before.
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
