import Foundation
import NextSale
import Shared
import Testing

@testable import ReceiptWorker

/// Money in minor units, the next-sale model's counts (pure), and its ranking through the path the workers take:
/// the counts recorded and folded into the model's tables in PostgreSQL, candidates read by
/// `PostgresCandidateSource` — what `recommend`, `post_purchase`, `next_sale` and `win_back` use.
@Suite struct NextSaleModelTests {
    static let day = Date(timeIntervalSince1970: 1_795_586_400)

    static func order(_ id: String, days: Double, _ products: String..., category: String? = nil) -> PurchasedOrder {
        PurchasedOrder(orderID: id, placedAt: day.addingTimeInterval(days * 86_400), products: products.map { .init(id: $0, category: category) })
    }

    @Test func moneyIsWrittenInTheCurrencysOwnMinorUnitsAndFormattedForTheLocale() throws {
        let euros = try #require(Money(Decimal(string: "1234.5")!, currency: "EUR"))
        #expect(euros.minorUnits == 123_450 && euros.text == "1234.50")
        #expect(euros.formatted(locale: "de-DE") == "1.234,50\u{a0}€")
        let yen = try #require(Money(Decimal(5990), currency: "JPY"))
        #expect(yen.minorUnits == 5990 && yen.text == "5990", "JPY has no minor unit")
        #expect(yen.formatted(locale: "ja-JP").contains("5,990") && !yen.formatted(locale: "ja-JP").contains("."))
        let dinars = try #require(Money(Decimal(string: "1.25")!, currency: "BHD"))
        #expect(dinars.minorUnits == 1250 && dinars.text == "1.250", "BHD has three")
        #expect(dinars.formatted(locale: "en-US").hasSuffix("1.250"))
        #expect(Money(Decimal(59.9), currency: "EUR")?.text == "59.90", "a JSON number's binary error is rounded away")
        #expect(Money(minorUnits: 5, currency: "EUR").text == "0.05" && Money(minorUnits: -250, currency: "EUR").text == "-2.50")
        #expect(Money.isCurrencyCode("EUR") && !Money.isCurrencyCode("eu") && !Money.isCurrencyCode("EURO"))
    }

    @Test func countsFollowEachCustomersSequenceWhateverOrderTheOrdersArriveIn() {
        let a = Self.order("o1", days: 0, "A", category: "tea")
        let b = Self.order("o2", days: 10, "B", category: "cups")
        let c = Self.order("o3", days: 20, "C", category: "tea")
        // Arriving late, o2 lands between o1 and o3: A→C is replaced by A→B and B→C.
        var counts = PurchaseCounts(customer: [a, c])
        #expect(counts.transitions == [Pair("A", "C"): 1])
        counts.add(PurchaseCounts.change(from: [a, c], to: [a, b, c]))
        #expect(counts == PurchaseCounts(customer: [a, b, c]))
        #expect(counts.transitions == [Pair("A", "B"): 1, Pair("B", "C"): 1])
        #expect(counts.followed == ["A": 1, "B": 1] && counts.orders == ["A": 1, "B": 1, "C": 1])
        #expect(counts.categoryTransitions == [Pair("tea", "cups"): 1, Pair("cups", "tea"): 1])
        // A refund takes o2 out again: as if it had never been.
        counts.add(PurchaseCounts.change(from: [a, b, c], to: [a, c]))
        #expect(counts.transitions == PurchaseCounts(customer: [a, c]).transitions && counts.orders == ["A": 1, "C": 1])
        let together = PurchaseCounts(customer: [Self.order("o4", days: 0, "X", "Y", "X")])
        #expect(together.together == [Pair("X", "Y"): 1, Pair("Y", "X"): 1] && together.orders == ["X": 1, "Y": 1], "a product once per order")
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
        let unknown = try await Self.candidates(Self.planted(successions: 5), [
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
        let found = try await Self.candidates(counts, [
            CandidateQuery(storeID: "s", history: history, interests: ["pots"]), CandidateQuery(storeID: "s", history: history),
        ])
        let leaning = Recommender.rank(found[0], excluding: ["T"], limit: 3)
        #expect(leaning.map(\.productID) == ["P1", "P2", "X"])
        #expect(leaning.map(\.reason) == [.matchesInterests, .matchesInterests, .popularInStore])
        #expect(Recommender.rank(found[1], excluding: ["T"], limit: 3).map(\.productID) == ["X", "P1", "P2"], "no interests: the store's top sellers")
    }
}
