import Foundation
import Shared

/// What churn risk is computed from: one customer's completed orders up to the moment of scoring.
public struct OrderSummary: Sendable, Equatable {
    /// How many completed orders.
    public var orders: Int
    public var firstOrderAt: Date
    public var lastOrderAt: Date
    /// The mean of the orders' totals, in the store's minor units (0 when no order had a total).
    public var meanValue: Double

    public init(orders: Int, firstOrderAt: Date, lastOrderAt: Date, meanValue: Double) {
        self.orders = orders
        self.firstOrderAt = firstOrderAt
        self.lastOrderAt = lastOrderAt
        self.meanValue = meanValue
    }

    /// The shopper's own mean gap between consecutive orders, in days; `nil` with one order.
    public var meanGapDays: Double? {
        orders > 1 ? lastOrderAt.timeIntervalSince(firstOrderAt) / 86_400 / Double(orders - 1) : nil
    }
}

/// What a store's customers do, against which one customer is measured.
public struct StoreBaseline: Sendable, Equatable {
    /// The median gap between a customer's first and second orders, in days, over the customers with two orders or
    /// more. ``fallbackGapDays`` while no customer has ordered twice.
    public var medianSecondOrderGapDays: Double
    /// The median over customers of their mean order value (minor units); 0 when no order had a total.
    public var medianMeanValue: Double

    /// The expected gap of a store none of whose customers has ordered twice yet.
    public static let fallbackGapDays = 30.0

    public init(medianSecondOrderGapDays: Double?, medianMeanValue: Double?) {
        self.medianSecondOrderGapDays = max(medianSecondOrderGapDays ?? Self.fallbackGapDays, ChurnRisk.minimumGapDays)
        self.medianMeanValue = medianMeanValue ?? 0
    }
}

/// A customer's risk of not buying again: recency, frequency, monetary value and *overdue* (days since the last
/// order ÷ the expected gap) combined into one number from 0 to 1 and a band.
///
/// The formula, fitted once by logistic regression on one split of the CDNOW purchase histories (calibration to
/// 1997-06-30, "no order by 1997-12-31") and rounded; docs/models.md gives its ROC AUC on other splits beside RFM,
/// recency and Pareto/NBD:
/// ```
/// expected gap = ((n − 1) · mean gap + 2 · store's median first→second gap) / (n + 1)   (at least 1 day)
/// overdue      = days since the last order / expected gap
/// L = ln(1 + overdue),  N = ln(n),  M = ln(1 + mean order value / store's median mean order value)
/// z    = 1.18 + 0.45·L − 1.55·N + 0.25·L·N − 0.38·M
/// risk = σ(z) · min(1, 0.7 + 0.3 · overdue)
/// ```
/// The expected gap is the shopper's own mean gap shrunk towards the store's median: one gap says little, ten say a
/// lot. The last factor holds back a customer who is not yet due: most first-time buyers never return, but a customer
/// who bought yesterday has not slipped away. Bands: ``RiskBand`` (`high` from 0.7, `medium` from 0.4).
public struct ChurnRisk: Sendable, Equatable {
    public typealias Band = RiskBand

    /// The shortest expected gap: same-day repeat orders do not make a customer overdue by the hour.
    public static let minimumGapDays = 1.0
    /// How many of the store's median gaps a shopper's own gaps weigh against.
    static let priorGaps = 2.0

    public var expectedGapDays: Double
    public var overdue: Double
    public var risk: Double
    public var band: Band

    /// `summary`'s risk with the clock at `asOf`.
    public init(_ summary: OrderSummary, baseline: StoreBaseline, asOf: Date) {
        let n = Double(max(summary.orders, 1))
        let ownGaps = n - 1
        let expected = (ownGaps * (summary.meanGapDays ?? 0) + Self.priorGaps * baseline.medianSecondOrderGapDays) / (ownGaps + Self.priorGaps)
        expectedGapDays = max(expected, Self.minimumGapDays)
        overdue = max(0, asOf.timeIntervalSince(summary.lastOrderAt) / 86_400) / expectedGapDays
        let relativeValue = baseline.medianMeanValue > 0 ? max(0, summary.meanValue) / baseline.medianMeanValue : 1
        let l = log1p(overdue)
        let f = log(n)
        let m = log1p(relativeValue)
        let z = 1.18 + 0.45 * l - 1.55 * f + 0.25 * l * f - 0.38 * m
        risk = min(1, 0.7 + 0.3 * overdue) / (1 + exp(-z))
        band = RiskBand(risk: risk)
    }
}

/// The median of `values` (the mean of the middle two for an even count); `nil` when empty.
public func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

extension ChurnRisk {
    /// The moment `summary`'s customer first counts as slipping away: overdue (past the expected gap) and at a risk of
    /// `band` or above — risk only grows while nothing is ordered, so the moment is found by bisection. `nil` when the
    /// risk never reaches the band within a hundred expected gaps.
    public static func lapse(of summary: OrderSummary, baseline: StoreBaseline, band: RiskBand) -> Date? {
        func reached(_ days: Double) -> Bool {
            let risk = ChurnRisk(summary, baseline: baseline, asOf: summary.lastOrderAt.addingTimeInterval(days * 86_400))
            return risk.overdue >= 1 && risk.band >= band
        }
        let gap = ChurnRisk(summary, baseline: baseline, asOf: summary.lastOrderAt).expectedGapDays
        var (low, high) = (0.0, gap * 100)
        guard reached(high) else { return nil }
        // To the minute.
        while high - low > 1.0 / 1440 {
            let middle = (low + high) / 2
            if reached(middle) { high = middle } else { low = middle }
        }
        return summary.lastOrderAt.addingTimeInterval(high * 86_400)
    }
}
