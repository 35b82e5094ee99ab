import Foundation
import NextSale
import Testing

/// The blend of "customers like you" with the next sale, and the shoppers' products kept as deltas — pure, no database.
@Suite struct RecommenderTests {
    static func candidates(neighbours: [(String, Double)], successors: [(String, Double)], popular: [(String, Double)]) -> Candidates {
        var candidates = Candidates()
        candidates.neighbours = neighbours.map { ($0.0, $0.1) }
        candidates.successors = successors.map { ($0.0, $0.1) }
        candidates.popular = popular.map { ($0.0, $0.1) }
        candidates.priorWeight = 0.1
        return candidates
    }

    @Test func neighboursLeadTheBlendAndNothingBoughtOrInTheOrderIsListed() {
        let candidates = Self.candidates(
            neighbours: [("BOUGHT", 9), ("IN-ORDER", 8), ("N1", 3), ("B", 2.9), ("N2", 1)], successors: [("B", 0.5), ("S", 0.2), ("IN-ORDER", 1)],
            popular: [("P", 100), ("N2", 50)])
        let list = Recommender.rank(candidates, excluding: ["BOUGHT", "IN-ORDER"], limit: 10)
        let ids = list.map(\.productID)
        #expect(!ids.contains("BOUGHT") && !ids.contains("IN-ORDER"))
        #expect(Set(ids).count == ids.count, "each product once")
        // B: neighbours 2.9/3 + 0.3 × 1 — first; the successions are its strongest evidence (their best, the neighbours' almost).
        #expect(ids.first == "B")
        #expect(list.first?.reason == .boughtNextByOthers)
        // N1 is the neighbours' best, and nothing else speaks for it.
        #expect(list.first { $0.productID == "N1" }?.reason == .boughtTogether)
        #expect(ids.firstIndex(of: "N1")! < ids.firstIndex(of: "S")!, "neighbours weigh above the successions' 0.3")
        #expect(list.map(\.score) == list.map(\.score).sorted(by: >))
    }

    @Test func aStoreServedItsTopSellersGetsThemAloneLessWhatTheShopperBought() {
        var candidates = Self.candidates(neighbours: [("N1", 3)], successors: [("S", 1)], popular: [("P1", 10), ("P2", 5), ("P3", 1)])
        candidates.popularityOnly = true
        let list = Recommender.rank(candidates, excluding: ["P2"], limit: 10)
        #expect(list.map(\.productID) == ["P1", "P3"])
        #expect(list.allSatisfy { $0.reason == .popularInStore })
    }

    @Test func aShopperWithoutHistoryGetsThePriorAlone() {
        let list = Recommender.rank(Self.candidates(neighbours: [], successors: [], popular: [("P1", 10), ("P2", 5)]), excluding: [], limit: 10)
        #expect(list.map(\.productID) == ["P1", "P2"])
        #expect(list.allSatisfy { $0.reason == .popularInStore })
    }

    static func order(_ id: String, day: Double, _ products: String...) -> PurchasedOrder {
        PurchasedOrder(orderID: id, placedAt: Date(timeIntervalSince1970: day * 86_400), products: products.map { .init(id: $0, category: nil) })
    }

    /// Applies changes to rows, as the upsert does (rows at zero deleted).
    static func apply(_ changes: [ShopperProducts.Change], to rows: inout [String: (orders: Int, last: Date)]) {
        for change in changes {
            let orders = (rows[change.productID]?.orders ?? 0) + change.orders
            rows[change.productID] = orders <= 0 ? nil : (orders, change.lastAt ?? rows[change.productID]?.last ?? .distantPast)
        }
    }

    @Test func theShoppersProductsAddUpToTheirHistoryWhateverOrderItArrivesInAndARefundLeavesNoTrace() {
        let first = Self.order("1", day: 1, "A", "B")
        let second = Self.order("2", day: 5, "B", "C")
        let late = Self.order("3", day: 3, "A")
        var rows: [String: (orders: Int, last: Date)] = [:]
        // Arriving as 2, 1, 3 (3 placed between them), then 2 refunded.
        for (before, after) in [
            ([], [second]), ([second], [second, first]), ([second, first], [second, first, late]), ([second, first, late], [first, late]),
        ] {
            Self.apply(ShopperProducts.change(from: before, to: after), to: &rows)
        }
        var direct: [String: (orders: Int, last: Date)] = [:]
        Self.apply(ShopperProducts.change(from: [], to: [first, late]), to: &direct)
        #expect(
            rows.mapValues { "\($0.orders)@\($0.last.timeIntervalSince1970 / 86_400)" }
                == direct.mapValues { "\($0.orders)@\($0.last.timeIntervalSince1970 / 86_400)" })
        #expect(rows.mapValues(\.orders) == ["A": 2, "B": 1])
        #expect(rows["A"]?.last == late.placedAt, "A was last bought in the late order")
        #expect(rows.count == 2, "two distinct products: the breadth the rows are counted into")
    }
}
