import Shared

/// One shopper's story for the consent property, in the steps the rules speak of: what CaptureModel is fed one event
/// at a time (ModelTests) and what a CaptureWorker process is sent over Kafka (IntegrationTests), judged by one oracle
/// written from the rules' statement, not from the model's code.
public enum ConsentStep: Equatable, Sendable, CustomStringConvertible {
    case capture(marketing: Bool?, level: String, offer: Bool)
    case confirmed, checkout, unsubscribe, spam, softBounce, hardBounce, viewed, erasure

    public var description: String {
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

    public static func random(using generator: inout SplitMix) -> ConsentStep {
        switch Int.random(in: 0..<100, using: &generator) {
        case 0..<30:
            .capture(
                marketing: [true, true, false, nil].randomElement(using: &generator)!,
                level: ["single", "confirmed", "unknown"].randomElement(using: &generator)!,
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

    /// Whether marketing is permitted after `steps` (all of them applied), from the rules as the issue states them:
    /// consent must have been given after the last withdrawal — explicitly (a capture with marketing consent,
    /// confirmed where the store asks for double opt-in) or by soft opt-in on an email-first checkout where the store
    /// uses it and no consent was ever recorded — and nothing may have ended mail for good (hard bounce, seven soft
    /// bounces in a row). An erasure ends the shopper: only what follows it counts, as a new shopper's story.
    public static func oraclePermitsMarketing(_ steps: [ConsentStep], doubleOptIn: Bool, softOptIn: Bool) -> Bool {
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
}
