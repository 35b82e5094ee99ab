import Foundation

/// The part of a store's model that a set of queries reads: counts and the strongest rows of each kind, as the
/// tables' indexes give them (``NextSaleTuning``). ``PostgresCandidateSource`` fills one with what a batch's queries
/// need, and it scores each query's candidates.
public struct ModelSlice: Sendable {
    public var orders: [String: Int] = [:]
    public var followed: [String: Int] = [:]
    /// Each product's strongest successors (`NextSaleTuning.successorsPerSeed`), count first.
    public var successors: [String: [(String, Int)]] = [:]
    public var together: [String: [(String, Int)]] = [:]
    public var nextCategories: [String: [(String, Int)]] = [:]
    /// Each category's top sellers (`NextSaleTuning.productsPerCategory`).
    public var byCategory: [String: [(String, Int)]] = [:]
    /// The store's top sellers of the window.
    public var popular: [(String, Int)] = []
    /// Whether the store serves its top sellers instead of the model (``StoreModelChoice``).
    public var popularityOnly = false

    public init() {}

    /// The candidates of `query`.
    public func candidates(for query: CandidateQuery) -> Candidates {
        var candidates = Candidates()
        var successors: [String: Double] = [:]
        var together: [String: Double] = [:]
        var priorWeight = 0.0
        for (seed, weight) in query.seeds {
            let followed = Double(self.followed[seed] ?? 0)
            priorWeight += weight * NextSaleTuning.successionPrior / (followed + NextSaleTuning.successionPrior)
            for (product, count) in self.successors[seed] ?? [] {
                successors[product, default: 0] += weight * Double(count) / (followed + NextSaleTuning.successionPrior)
            }
            let orders = Double(self.orders[seed] ?? 0)
            for (product, count) in self.together[seed] ?? [] {
                together[product, default: 0] += weight * Double(count) / (orders + NextSaleTuning.confidenceShrinkage)
            }
        }
        var categoryShares: [String: Double] = [:]
        for (category, weight) in query.categories {
            for (next, count) in nextCategories[category] ?? [] { categoryShares[next, default: 0] += weight * Double(count) }
        }
        var categoryNext: [String: Double] = [:]
        for (category, share) in categoryShares.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }).prefix(NextSaleTuning.nextCategories) {
            for (product, orders) in byCategory[category] ?? [] { categoryNext[product, default: 0] += share * Double(orders) }
        }
        var interests: [String: Double] = [:]
        for category in Set(query.interests) {
            for (product, orders) in byCategory[category] ?? [] { interests[product, default: 0] += Double(orders) }
        }
        func best(_ scores: [String: Double]) -> [(productID: String, score: Double)] {
            Array(scores.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(NextSaleTuning.candidatesPerKind).map { ($0.key, $0.value) })
        }
        candidates.successors = best(successors)
        candidates.priorWeight = query.seeds.isEmpty ? 1 : priorWeight
        candidates.together = best(together)
        candidates.categoryNext = best(categoryNext)
        candidates.interests = best(interests)
        candidates.popular = popular.map { ($0.0, Double($0.1)) }
        candidates.popularityOnly = popularityOnly
        return candidates
    }
}
