import Foundation
import NextSale
import Shared
import Testing

@testable import ReceiptWorker

/// ReceiptWorker's pure parts: money in minor units and the next-sale model's counts.
@Suite struct ReceiptModelTests {
    static let day = Date(timeIntervalSince1970: 1_795_586_400)  // 2026-11-25T06:00:00Z

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

    @Test func orderStatusesAreTheColumnsTextAndNothingElse() {
        #expect(OrderStatus.allCases.map(\.rawValue) == ["completed", "refunded", "cancelled"], "receipt_orders.status CHECK")
        #expect(OrderStatus(postgresText: "refunded") == .refunded && OrderStatus(postgresText: "shipped") == nil)
        #expect(OrderStatus.cancelled.postgresText == "cancelled")
        #expect(OrderStatus.endings == [.refunded, .cancelled] && OrderStatus.endings.map(\.stepCancellationReason) == ["order_refunded", "order_cancelled"])
    }
}
