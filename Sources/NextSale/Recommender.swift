import Foundation
import Shared

/// One product recommended, with why (the contract's `reason`s) and a score, higher first.
public struct Recommendation: Sendable, Equatable {
    public enum Reason: String, Sendable {
        /// What customers bought in their next order after what this shopper bought.
        case boughtNextByOthers = "bought_next_by_others"
        /// Bought in the same order as what this shopper bought.
        case boughtTogether = "bought_together"
        /// A top seller of the category customers moved to next from this shopper's categories.
        case sameCategoryNext = "same_category_next"
        /// Among the store's top sellers of the last 90 days.
        case popularInStore = "popular_in_store"
        /// Of a category the shopper said they are interested in.
        case matchesInterests = "matches_interests"
    }

    public var productID: String
    public var score: Double
    public var reason: Reason

    public init(productID: String, score: Double, reason: Reason) {
        self.productID = productID
        self.score = score
        self.reason = reason
    }

    /// As the contract's `RecommendProducts.products` lists it: `product_id`, `score`, `reason`.
    public var json: JSONValue {
        .object(["product_id": .string(productID), "score": .number(score), "reason": .string(reason.rawValue)])
    }
}

/// What the model is asked for one shopper: the products they bought (recent orders weigh more) and the categories
/// they like, from which a ``CandidateSource`` gathers candidates.
public struct CandidateQuery: Sendable, Equatable {
    public var storeID: String
    /// Each product the shopper bought, with its weight: 1 for the latest order, halved for each order before.
    public var seeds: [String: Double]
    /// Each category they bought from, weighted the same way.
    public var categories: [String: Double]
    /// The shopper's stated interests (categories), when a survey told them.
    public var interests: [String]

    public init(storeID: String, seeds: [String: Double], categories: [String: Double], interests: [String] = []) {
        self.storeID = storeID
        self.seeds = seeds
        self.categories = categories
        self.interests = interests
    }

    /// The query for a shopper with `history` (their completed orders): each product weighs 0.5^k, k the number of
    /// orders placed after the latest one containing it; the products of the latest orders first, at most
    /// ``NextSaleTuning/seeds``.
    public init(storeID: String, history: [PurchasedOrder], interests: [String] = []) {
        var seeds: [String: Double] = [:]
        var categories: [String: Double] = [:]
        for (rank, order) in PurchasedOrder.sequence(history).reversed().enumerated() {
            let weight = pow(0.5, Double(rank))
            for product in order.products {
                if seeds[product.id] == nil, seeds.count >= NextSaleTuning.seeds { continue }
                seeds[product.id] = max(seeds[product.id] ?? 0, weight)
                if let category = product.category { categories[category] = max(categories[category] ?? 0, weight) }
            }
        }
        self.init(storeID: storeID, seeds: seeds, categories: categories, interests: interests)
    }
}

/// The candidates a source found for one query, each list best first, scored within its own kind.
public struct Candidates: Sendable, Equatable {
    /// Σ over seeds of weight × confidence(seed → product), the confidence shrunk toward 0 for seeds seen rarely.
    public var successors: [(productID: String, score: Double)] = []
    /// Σ over seeds of weight × share of the seed's orders that also held the product.
    public var together: [(productID: String, score: Double)] = []
    /// Top sellers of the categories customers moved to next, weighted by how often they moved there.
    public var categoryNext: [(productID: String, score: Double)] = []
    /// Top sellers of the shopper's stated interests.
    public var interests: [(productID: String, score: Double)] = []
    /// The store's top sellers of the last 90 days.
    public var popular: [(productID: String, score: Double)] = []

    public init() {}

    public static func == (lhs: Candidates, rhs: Candidates) -> Bool {
        func same(_ a: [(productID: String, score: Double)], _ b: [(productID: String, score: Double)]) -> Bool {
            a.count == b.count && zip(a, b).allSatisfy { $0.productID == $1.productID && $0.score == $1.score }
        }
        return same(lhs.successors, rhs.successors) && same(lhs.together, rhs.together) && same(lhs.categoryNext, rhs.categoryNext)
            && same(lhs.interests, rhs.interests) && same(lhs.popular, rhs.popular)
    }
}

/// Where candidates come from: PostgreSQL in the workers (``PostgresCandidateSource``), memory in the benchmark.
/// Both follow ``NextSaleTuning`` so that the benchmark measures what the workers recommend.
public protocol CandidateSource {
    /// The candidates of each query, in order.
    func candidates(for queries: [CandidateQuery]) throws -> [Candidates]
}

/// The model's knobs, shared by every source; chosen by `rapport-bench nextsale` (README: figures and data).
public enum NextSaleTuning {
    /// Seeds per shopper: the products of their latest orders first (older ones weigh little, and each costs a read).
    public static let seeds = 12
    /// Successors read per seed (its most frequent ones).
    public static let successorsPerSeed = 25
    /// Co-purchased products read per seed.
    public static let togetherPerSeed = 10
    /// Next categories followed per shopper, and top sellers read from each.
    public static let nextCategories = 3
    public static let productsPerCategory = 20
    /// Top sellers read for the fallback.
    public static let popular = 100
    /// Candidates of each kind kept per shopper, best first: enough for a list of 10 past what they bought.
    public static let candidatesPerKind = 60
    /// Added to a seed's follow (and order) count: one succession seen once is weak evidence. 3 before the Instacart
    /// histories (README): there 30 lifted hit rate@10 from 0.73× to 0.84× popularity's and recall from 0.93× to
    /// 1.09×, and the planted histories from 1.61× to 1.65×.
    public static let confidenceShrinkage = 30.0
    /// How far back the store's top sellers count.
    public static let popularWindow: TimeInterval = 90 * 86_400
}

/// Ranks candidates into one list: successors first (the next-sale model), then same-order co-purchase, category
/// transitions and the store's top sellers, each product once, never one in `excluded` (what the shopper bought,
/// and what is in the triggering order). The top sellers of the shopper's stated interests, when known, come right
/// after the successors (`matches_interests`).
public enum Recommender {
    /// At most `limit` recommendations, best first.
    public static func rank(_ candidates: Candidates, excluding excluded: Set<String>, limit: Int) -> [Recommendation] {
        var chosen: [Recommendation] = []
        var taken = excluded
        let tiers: [([(productID: String, score: Double)], Recommendation.Reason)] = [
            (candidates.successors, .boughtNextByOthers), (candidates.interests, .matchesInterests), (candidates.together, .boughtTogether),
            (candidates.categoryNext, .sameCategoryNext), (candidates.popular, .popularInStore),
        ]
        for (tier, (list, reason)) in tiers.enumerated() where chosen.count < limit {
            let best = list.map(\.score).max() ?? 0
            guard best > 0 else { continue }
            let ordered = list.sorted { ($0.score, $1.productID) > ($1.score, $0.productID) }
            for (product, raw) in ordered where chosen.count < limit && !taken.contains(product) {
                taken.insert(product)
                // Tiers stay apart in the score: every successor outranks every fallback, and so on down.
                let score = Double(tiers.count - tier - 1) + raw / best * 0.999
                chosen.append(Recommendation(productID: product, score: (score * 10_000).rounded() / 10_000, reason: reason))
            }
        }
        return chosen
    }
}
