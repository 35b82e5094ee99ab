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
/// they like, from which ``PostgresCandidateSource`` gathers candidates.
public struct CandidateQuery: Sendable, Equatable {
    public var storeID: String
    /// Each product the shopper bought, with its weight: 1 for the latest order, halved for each order before.
    public var seeds: [String: Double]
    /// Each category they bought from, weighted the same way.
    public var categories: [String: Double]
    /// The shopper's stated interests (categories), when a survey told them.
    public var interests: [String]
    /// The shopper, whose "customers like you" suggestions are read.
    public var shopperID: Int64?

    public init(storeID: String, seeds: [String: Double], categories: [String: Double], interests: [String] = [], shopperID: Int64? = nil) {
        self.storeID = storeID
        self.seeds = seeds
        self.categories = categories
        self.interests = interests
        self.shopperID = shopperID
    }

    /// The query for a shopper with `history` (their completed orders): each product weighs 0.5^k, k the number of
    /// orders placed after the latest one containing it; the products of the latest orders first, at most
    /// ``NextSaleTuning/seeds``.
    public init(storeID: String, history: [PurchasedOrder], interests: [String] = [], shopperID: Int64? = nil) {
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
        self.init(storeID: storeID, seeds: seeds, categories: categories, interests: interests, shopperID: shopperID)
    }
}

/// The candidates a source found for one query, each list best first, scored within its own kind.
public struct Candidates: Sendable, Equatable {
    /// Σ over seeds of weight × count(seed → product) / (followed(seed) + ``NextSaleTuning/successionPrior``): the
    /// evidence of each seed's own successions, which ``Recommender`` adds to the prior (``priorWeight``).
    public var successors: [(productID: String, score: Double)] = []
    /// How much the shopper's next sale leans on the prior rather than on successions: Σ over seeds of weight ×
    /// m / (followed(seed) + m), m = ``NextSaleTuning/successionPrior`` — large where the seeds were seldom followed —
    /// or 1 for a shopper without seeds (nothing known of them but the prior).
    public var priorWeight: Double = 1
    /// Σ over seeds of weight × share of the seed's orders that also held the product.
    public var together: [(productID: String, score: Double)] = []
    /// Top sellers of the categories customers moved to next, weighted by how often they moved there.
    public var categoryNext: [(productID: String, score: Double)] = []
    /// Top sellers of the shopper's stated interests (orders containing each).
    public var interests: [(productID: String, score: Double)] = []
    /// The store's top sellers of the last 90 days (orders containing each).
    public var popular: [(productID: String, score: Double)] = []
    /// "Customers like you": what the shopper's nearest neighbours bought (the customers whose purchases are most
    /// like theirs, by cosine), each product's score the sum of the similarities of the neighbours who bought it.
    public var neighbours: [(productID: String, score: Double)] = []
    /// Whether the store serves its top sellers instead of the model (its backtest said the model does not beat them).
    public var popularityOnly = false

    public init() {}

    public static func == (lhs: Candidates, rhs: Candidates) -> Bool {
        func same(_ a: [(productID: String, score: Double)], _ b: [(productID: String, score: Double)]) -> Bool {
            a.count == b.count && zip(a, b).allSatisfy { $0.productID == $1.productID && $0.score == $1.score }
        }
        return same(lhs.successors, rhs.successors) && lhs.priorWeight == rhs.priorWeight && same(lhs.together, rhs.together)
            && same(lhs.categoryNext, rhs.categoryNext) && same(lhs.interests, rhs.interests) && same(lhs.popular, rhs.popular)
            && same(lhs.neighbours, rhs.neighbours) && lhs.popularityOnly == rhs.popularityOnly
    }
}

/// The model's knobs; chosen by `rapport-bench nextsale` (docs/models.md: figures and data).
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
    /// Added to a seed's order count in co-purchase: one order seen together once is weak evidence.
    public static let confidenceShrinkage = 30.0
    /// How many follows of evidence the prior is worth: each seed's successions are shrunk towards the prior (the
    /// store's recent top sellers, leaning to stated interests), Σ w·(count(p → q) + m·prior(q)) / (followed(p) + m);
    /// a succession has to be seen about as often as m before it outweighs what the store sells now. Chosen with
    /// `rapport-bench nextsale` (docs/models.md): 30, 100 and 300 against popularity on dunnhumby 1.03×, 1.06×, 1.09× hit
    /// rate, on Instacart 0.88×, 1.00×, 0.96×, on the planted successions 1.66×, 1.48×, 1.14×.
    public static let successionPrior = 100.0
    /// The part of the prior given to the top sellers of the shopper's stated interests, when a survey told them (the
    /// rest to the store's top sellers): a choice, not measured — no public purchase history has surveys.
    public static let interestsShare = 0.75
    /// "Customers like you": the products of the shopper's profile whose buyers are candidate neighbours (the most
    /// recently bought first), the most recent buyers read of each, and the nearest neighbours kept. Chosen with
    /// `rapport-bench nextsale` on Instacart, the last 5 orders held out (docs/models.md): hit rate ÷ distinct-buyer
    /// popularity 1.08× at 30 × 100 (profile × buyers) and at 30 × 300, 1.11× at 60 × 300; 100 neighbours 1.08×.
    public static let profile = 60
    public static let buyersPerProduct = 300
    public static let neighbours = 50
    /// What the next sale's successions and prior weigh beside the neighbours, each normalised to its best candidate
    /// (0.15 and 0.3 measured alike on Instacart; the prototype's 0.3 kept).
    public static let successionBlend = 0.3
    /// How far back the store's top sellers count.
    public static let popularWindow: TimeInterval = 90 * 86_400
}

/// Ranks candidates into one list: first the next sale — what the shopper's nearest neighbours bought ("customers like
/// you", `bought_together`) blended with the successions and the prior (``Candidates/priorWeight`` × each product's
/// share of the store's recent top sellers, or of the top sellers of the shopper's stated interests when known), each
/// normalised to its best candidate, the successions weighing ``NextSaleTuning/successionBlend``; a candidate's
/// `reason` is the evidence that speaks most for it, each as a share of its own best candidate — then same-order co-purchase and category transitions; each product once,
/// never one in `excluded` (what the shopper bought, and what is in the triggering order). A store whose backtest
/// chose popularity (``Candidates/popularityOnly``) gets its top sellers alone, `popular_in_store`.
public enum Recommender {
    /// At most `limit` recommendations, best first.
    public static func rank(_ candidates: Candidates, excluding excluded: Set<String>, limit: Int) -> [Recommendation] {
        var chosen: [Recommendation] = []
        var taken = excluded
        let tiers: [[(productID: String, score: Double, reason: Recommendation.Reason)]] =
            candidates.popularityOnly
            ? [candidates.popular.map { ($0.productID, $0.score, .popularInStore) }]
            : [
                nextSale(candidates, excluding: excluded), candidates.together.map { ($0.productID, $0.score, .boughtTogether) },
                candidates.categoryNext.map { ($0.productID, $0.score, .sameCategoryNext) },
            ]
        for (tier, list) in tiers.enumerated() where chosen.count < limit {
            let best = list.filter { !excluded.contains($0.productID) }.map(\.score).max() ?? 0
            guard best > 0 else { continue }
            let ordered = list.sorted { ($0.score, $1.productID) > ($1.score, $0.productID) }
            for (product, raw, reason) in ordered where chosen.count < limit && !taken.contains(product) {
                taken.insert(product)
                // Tiers stay apart in the score: every next-sale candidate outranks every fallback, and so on down.
                let score = Double(tiers.count - tier - 1) + raw / best * 0.999
                chosen.append(Recommendation(productID: product, score: (score * 10_000).rounded() / 10_000, reason: reason))
            }
        }
        return chosen
    }

    /// A next-sale candidate's score, part by part.
    struct Parts {
        var neighbours = 0.0, succession = 0.0, popular = 0.0, interests = 0.0

        /// The successions and the prior.
        var sequence: Double { succession + popular + interests }

        /// The evidence that speaks most for the candidate: the neighbours when their score, as a share of their best
        /// candidate's, is above the sequence's (successions and prior) as a share of its best — else, and on a tie (the
        /// more specific explanation), the sequence's largest part.
        func reason(neighbourScale: Double, sequenceScale: Double) -> Recommendation.Reason {
            if neighbours * neighbourScale > sequence * sequenceScale / NextSaleTuning.successionBlend { return .boughtTogether }
            return succession >= max(popular, interests) ? .boughtNextByOthers : interests >= popular ? .matchesInterests : .popularInStore
        }
    }

    /// The neighbours blended with the successions and the prior, each candidate's reason the part that weighs most.
    static func nextSale(
        _ candidates: Candidates, excluding excluded: Set<String>
    ) -> [(productID: String, score: Double, reason: Recommendation.Reason)] {
        var parts: [String: Parts] = [:]
        for (product, score) in candidates.neighbours { parts[product, default: Parts()].neighbours += score }
        for (product, score) in candidates.successors { parts[product, default: Parts()].succession += score }
        let interestsShare = candidates.interests.isEmpty ? 0 : NextSaleTuning.interestsShare
        // `mass` of the prior spread over `list` by each product's share of its orders.
        func spread(_ list: [(productID: String, score: Double)], mass: Double, into part: WritableKeyPath<Parts, Double>) {
            let total = list.reduce(0) { $0 + max($1.score, 0) }
            guard total > 0, mass > 0 else { return }
            for (product, count) in list where count > 0 { parts[product, default: Parts()][keyPath: part] += mass * count / total }
        }
        spread(candidates.popular, mass: candidates.priorWeight * (1 - interestsShare), into: \.popular)
        spread(candidates.interests, mass: candidates.priorWeight * interestsShare, into: \.interests)
        // Each part normalised to its best candidate among those that may be listed.
        let open = parts.filter { !excluded.contains($0.key) }.values
        let neighbourScale = open.map(\.neighbours).max().map { $0 > 0 ? 1 / $0 : 0 } ?? 0
        let sequenceScale = open.map(\.sequence).max().map { $0 > 0 ? NextSaleTuning.successionBlend / $0 : 0 } ?? 0
        return parts.map { product, part in
            (
                product, part.neighbours * neighbourScale + part.sequence * sequenceScale,
                part.reason(neighbourScale: neighbourScale, sequenceScale: sequenceScale)
            )
        }
    }
}
