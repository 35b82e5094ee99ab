/// How likely a customer is to have slipped away, in three bands of churn risk (0 to 1): what a store's `win_back`
/// setting names and what `SurveyWorker churn` prints.
public enum RiskBand: String, Sendable, Comparable, CaseIterable {
    case low, medium, high

    /// The lowest risk in the band.
    public var minimumRisk: Double {
        switch self {
        case .low: 0
        case .medium: 0.4
        case .high: 0.7
        }
    }

    /// The band `risk` falls in.
    public init(risk: Double) {
        self = risk >= Self.high.minimumRisk ? .high : risk >= Self.medium.minimumRisk ? .medium : .low
    }

    public static func < (lhs: RiskBand, rhs: RiskBand) -> Bool { lhs.minimumRisk < rhs.minimumRisk }
}
