import Foundation
import NextSale
import Shared
import Testing

@testable import ReceiptWorker

/// The next-sale model's ranking through the path the workers take: the counts recorded and folded into the model's
/// tables in PostgreSQL, candidates read by `PostgresCandidateSource` — what `recommend`, `post_purchase`, `next_sale`
/// and `win_back` use. (Money and the counts themselves, which need no database: ModelTests.)
@Suite struct NextSaleModelTests {
    static let day = Date(timeIntervalSince1970: 1_795_586_400)

    static func order(_ id: String, days: Double, _ products: String..., category: String? = nil) -> PurchasedOrder {
        PurchasedOrder(orderID: id, placedAt: day.addingTimeInterval(days * 86_400), products: products.map { .init(id: $0, category: category) })
    }

    /// The moment the planted models are read at: the top sellers' 90 days end here.
    static let asOf = day.addingTimeInterval(10 * 86_400)

    /// Records store `s`'s `counts` in a fresh database's model tables as ReceiptWorker does (change sets, folded, the
    /// top sellers refreshed as of ``asOf``) and reads `queries`' candidates back through `PostgresCandidateSource`.
    static func candidates(_ counts: PurchaseCounts, _ queries: [CandidateQuery]) async throws -> [Candidates] {
        try await TestEnvironment.withFreshDatabase { url in
            let postgres = TestEnvironment.postgres(url: url, poolSize: 1)
            defer { postgres.close() }
            try await WorkerApp.migrate(descriptor: ReceiptWorker.descriptor, postgres: postgres, logger: TestEnvironment.logger, timeout: .seconds(30))
            return try await postgres.withConnection { connection in
                try PurchaseModelStore.record(["s": counts], connection: connection)
                while try PurchaseModelStore.fold(limit: 100_000, refreshAfter: .zero, now: asOf, connection: connection) > 0 {}
                return try PostgresCandidateSource(connection: connection, asOf: asOf).candidates(for: queries)
            }
        }
    }

    /// `successions` customers bought A, then B, half a year ago; forty bought P (popular) alone, then P and Q, within
    /// the top sellers' 90 days.
    static func planted(successions: Int) -> PurchaseCounts {
        var counts = PurchaseCounts()
        for n in 0..<successions { counts.add(PurchaseCounts(customer: [Self.order("a\(n)", days: -200, "A"), Self.order("b\(n)", days: -195, "B")])) }
        for n in 0..<40 { counts.add(PurchaseCounts(customer: [Self.order("p\(n)", days: 1, "P"), Self.order("q\(n)", days: 6, "P", "Q")])) }
        return counts
    }

    @Test func aWellObservedSuccessionRanksAboveMerelyPopularProductsAndNothingBoughtIsRecommended() async throws {
        let history = [Self.order("mine", days: 9, "A")]
        let candidates = try await Self.candidates(Self.planted(successions: 400), [CandidateQuery(storeID: "s", history: history)])[0]
        let ranked = Recommender.rank(candidates, excluding: ["A", "T"], limit: 3)
        #expect(ranked.map(\.productID) == ["B", "P", "Q"])
        #expect(ranked.first?.reason == .boughtNextByOthers)
        #expect(ranked.dropFirst().allSatisfy { $0.reason == .popularInStore })
        #expect(zip(ranked, ranked.dropFirst()).allSatisfy { $0.score > $1.score }, "higher first")
        // What the shopper bought, or what is in the triggering order, never appears.
        let excluded = Recommender.rank(candidates, excluding: ["A", "T", "B", "P"], limit: 10)
        #expect(!excluded.contains { ["A", "T", "B", "P"].contains($0.productID) })
        #expect(excluded.map(\.productID) == ["Q"])
    }

    @Test func aSuccessionSeenAFewTimesIsShrunkTowardsWhatTheStoreSellsNow() async throws {
        // Five customers' A → B is weak evidence beside forty customers' P: the prior (the recent top sellers) leads.
        let history = [Self.order("mine", days: 9, "A")]
        let candidates = try await Self.candidates(Self.planted(successions: 5), [CandidateQuery(storeID: "s", history: history)])[0]
        let ranked = Recommender.rank(candidates, excluding: ["A"], limit: 3)
        #expect(ranked.map(\.productID) == ["P", "Q", "B"])
        #expect(ranked.map(\.reason) == [.popularInStore, .popularInStore, .boughtNextByOthers])
        // A product never followed by anything leaves the whole next sale to the prior, as does a shopper without orders.
        let unknown = try await Self.candidates(
            Self.planted(successions: 5),
            [
                CandidateQuery(storeID: "s", history: [Self.order("mine", days: 9, "Z")]), CandidateQuery(storeID: "s", history: []),
            ])
        #expect(unknown.map(\.priorWeight) == [1, 1])
        #expect(unknown.map { Recommender.rank($0, excluding: ["Z"], limit: 3).map(\.productID) } == [["P", "Q"], ["P", "Q"]])
    }

    @Test func statedInterestsLeadThePriorOverTheStoresTopSellers() async throws {
        var counts = PurchaseCounts()
        for n in 0..<40 { counts.add(PurchaseCounts(customer: [Self.order("x\(n)", days: 1, "X", category: "misc")])) }
        for n in 0..<6 { counts.add(PurchaseCounts(customer: [Self.order("p\(n)", days: 2, n < 4 ? "P1" : "P2", category: "pots")])) }
        let history = [Self.order("mine", days: 9, "T", category: "tea")]
        let found = try await Self.candidates(
            counts,
            [
                CandidateQuery(storeID: "s", history: history, interests: ["pots"]), CandidateQuery(storeID: "s", history: history),
            ])
        let leaning = Recommender.rank(found[0], excluding: ["T"], limit: 3)
        #expect(leaning.map(\.productID) == ["P1", "P2", "X"])
        #expect(leaning.map(\.reason) == [.matchesInterests, .matchesInterests, .popularInStore])
        #expect(Recommender.rank(found[1], excluding: ["T"], limit: 3).map(\.productID) == ["X", "P1", "P2"], "no interests: the store's top sellers")
    }
}
