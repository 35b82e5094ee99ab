import Foundation

/// Candidates from counts held in memory: what `rapport-bench nextsale` evaluates, by the same rules and limits as
/// ``PostgresCandidateSource`` (``NextSaleTuning``).
public struct MemoryCandidateSource: CandidateSource {
    private struct Store {
        var counts: PurchaseCounts
        var successors: [String: [(String, Int)]] = [:]
        var together: [String: [(String, Int)]] = [:]
        var nextCategories: [String: [(String, Int)]] = [:]
        var byCategory: [String: [(String, Int)]] = [:]
        var popular: [(String, Int)] = []
    }

    private let stores: [String: Store]

    /// Indexes `counts` (by store) as the tables are; top sellers are those of the `window` (default: 90 days) before
    /// `asOf`.
    public init(counts: [String: PurchaseCounts], asOf: Date, window: TimeInterval = NextSaleTuning.popularWindow) {
        func top(_ pairs: [Pair: Int], limit: Int) -> [String: [(String, Int)]] {
            var grouped: [String: [(String, Int)]] = [:]
            for (pair, count) in pairs where count > 0 { grouped[pair.from, default: []].append((pair.to, count)) }
            return grouped.mapValues { Array($0.sorted { ($0.1, $1.0) > ($1.1, $0.0) }.prefix(limit)) }
        }
        let since = PurchaseCounts.day(asOf.addingTimeInterval(-window))
        let until = PurchaseCounts.day(asOf)
        stores = counts.mapValues { counts in
            var store = Store(counts: counts)
            store.successors = top(counts.transitions, limit: NextSaleTuning.successorsPerSeed)
            store.together = top(counts.together, limit: NextSaleTuning.togetherPerSeed)
            store.nextCategories = top(counts.categoryTransitions, limit: NextSaleTuning.nextCategories)
            var byCategory: [Pair: Int] = [:]
            for (product, orders) in counts.orders { if let category = counts.categories[product] { byCategory[Pair(category, product)] = orders } }
            store.byCategory = top(byCategory, limit: NextSaleTuning.productsPerCategory)
            var recent: [String: Int] = [:]
            for (pair, orders) in counts.daily where pair.to > since && pair.to <= until { recent[pair.from, default: 0] += orders }
            store.popular = Array(recent.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(NextSaleTuning.popular).map { ($0.key, $0.value) })
            return store
        }
    }

    public func candidates(for queries: [CandidateQuery]) -> [Candidates] {
        queries.map { query in
            guard let store = stores[query.storeID] else { return Candidates() }
            var candidates = Candidates()
            var successors: [String: Double] = [:]
            var together: [String: Double] = [:]
            for (seed, weight) in query.seeds {
                let followed = Double(store.counts.followed[seed] ?? 0)
                for (product, count) in store.successors[seed] ?? [] {
                    successors[product, default: 0] += weight * Double(count) / (followed + NextSaleTuning.confidenceShrinkage)
                }
                let orders = Double(store.counts.orders[seed] ?? 0)
                for (product, count) in store.together[seed] ?? [] {
                    together[product, default: 0] += weight * Double(count) / (orders + NextSaleTuning.confidenceShrinkage)
                }
            }
            var categoryShares: [String: Double] = [:]
            for (category, weight) in query.categories {
                for (next, count) in store.nextCategories[category] ?? [] { categoryShares[next, default: 0] += weight * Double(count) }
            }
            var categoryNext: [String: Double] = [:]
            for (category, share) in categoryShares.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }).prefix(NextSaleTuning.nextCategories) {
                for (product, orders) in store.byCategory[category] ?? [] { categoryNext[product, default: 0] += share * Double(orders) }
            }
            var interests: [String: Double] = [:]
            for category in query.interests {
                for (product, orders) in store.byCategory[category] ?? [] { interests[product, default: 0] += Double(orders) }
            }
            func best(_ scores: [String: Double]) -> [(productID: String, score: Double)] {
                Array(scores.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(NextSaleTuning.candidatesPerKind).map { ($0.key, $0.value) })
            }
            candidates.successors = best(successors)
            candidates.together = best(together)
            candidates.categoryNext = best(categoryNext)
            candidates.interests = best(interests)
            candidates.popular = store.popular.map { ($0.0, Double($0.1)) }
            return candidates
        }
    }
}
