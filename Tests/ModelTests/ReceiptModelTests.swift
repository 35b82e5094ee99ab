import Foundation
import InboundEvents
import NextSale
import Shared
import Testing

@testable import ReceiptWorker

/// ReceiptWorker's pure parts: money in minor units, the next-sale model's counts, and ``ReceiptModel`` — the batch's
/// orders, the journey and the conversation, fed as the handler would feed it.
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

    // MARK: - ReceiptModel

    static let store = "shop"
    static let ana = "ana@example.com"

    /// A `checkout-events` track event `name` about `orderID`, `minutes` after ``day``.
    static func checkout(_ name: String, _ orderID: String, minutes: Double = 0, products: [String] = ["A"], email: String? = ana, user: String = "u-1")
        -> ReceiptEvent
    {
        var properties: [String: JSONValue] = [
            "order_id": .string(orderID), "currency": .string("EUR"),
            "products": .array(products.map { .object(["product_id": .string($0), "price": .number(12.5)]) }),
        ]
        if let email { properties["email"] = .string(email) }
        let message = SegmentMessage(
            kind: .track, messageID: "m-\(orderID)-\(name)", timestamp: day.addingTimeInterval(minutes * 60), userID: user, anonymousID: nil, storeID: store,
            event: name, properties: properties, traits: [:], context: [:])
        return try! ReceiptEvent(message)
    }

    static func position(_ offset: Int) -> MessagePosition {
        MessagePosition(topicPartition: TopicPartition(topic: "checkout-events", partition: 0), offset: Int64(offset))
    }

    /// The model of `events` (read at offsets 0, 1, …), processed a minute after the last.
    static func receiptModel(_ events: [ReceiptEvent], recorded: [OrderStore.Key: OrderStore.Recorded] = [:], processedAt: Date? = nil) -> ReceiptModel {
        ReceiptModel(
            stores: StoreDirectory(), topics: Topics(), processedAt: processedAt ?? events.map(\.message.timestamp).max()!.addingTimeInterval(60),
            recorded: recorded, events: events.enumerated().map { ($1, position($0)) })
    }

    static func key(_ orderID: String) -> OrderStore.Key { OrderStore.Key(storeID: store, orderID: orderID) }

    /// A contact that may receive transactional and marketing mail.
    static func contact(_ email: String = ana, id: Int64 = 7) -> (Contacts.Key, Contacts.Contact) {
        var contact = Contacts.Contact(contactID: id, storeID: store, email: email, unsubscribeToken: "unsub-\(id)")
        contact.permission.transactional = true
        contact.permission.marketing = true
        return (Contacts.Key(storeID: store, email: email), contact)
    }

    @Test func anOrderIsRecordedOnceAndEndedOnceWhateverTheBatchRepeats() {
        let o1 = Self.order("o1", days: -10, "A")
        let events = [
            Self.checkout("Order Completed", "o1"),  // recorded before the batch: changes nothing
            Self.checkout("Order Completed", "o2", minutes: 1, products: ["B"]),
            Self.checkout("Order Completed", "o2", minutes: 2, products: ["C"]),  // the same order again
            Self.checkout("Order Refunded", "o2", minutes: 3),
            Self.checkout("Order Cancelled", "o2", minutes: 4),  // ended already
            Self.checkout("Order Refunded", "o1", minutes: 5),
            Self.checkout("Order Cancelled", "o1", minutes: 6),
        ]
        #expect(ReceiptModel.orderKeys(events) == [Self.key("o1"), Self.key("o2")])
        var model = Self.receiptModel(events, recorded: [Self.key("o1"): OrderStore.Recorded(shopperID: 5, status: .completed, placedAt: o1.placedAt)])
        #expect(model.orders.map(\.order.orderID) == ["o2"])
        #expect(model.orders.map { $0.order.items.map(\.productID) } == [["B"]], "the first message of an order is the order")
        #expect(model.orders.first?.status == .refunded && model.orders.first?.endedAt == Self.day.addingTimeInterval(180))
        #expect(model.ended.map { "\($0.key.orderID) \($0.status) \($0.at.timeIntervalSince(Self.day))" } == ["o1 refunded 300.0"])

        model.bought(by: [9])
        #expect(model.customerKeys.map(\.shopperID) == [5, 9])
        model.follow([5: [o1]])
        #expect(model.after[5] == [] && model.after[9] == [], "both orders ended: neither stands")
        let output = model.apply(waiting: [:], contacts: [:], preferences: [:], candidates: [:])
        #expect(output.orders.map(\.shopperID) == [9] && output.ended.map(\.key) == [Self.key("o1")])
        #expect(output.modelChange.counts == [Self.store: PurchaseCounts.change(from: [o1], to: [])], "o2 came and went: only o1's leaving counts")
        #expect(
            output.endings == [
                ReceiptModel.Ending(key: Self.key("o2"), status: .refunded, index: 1, orderArrivedAt: 0, shopperID: 9),
                ReceiptModel.Ending(key: Self.key("o1"), status: .refunded, index: 2, orderArrivedAt: -1, shopperID: 5),
            ])
        #expect(output.endingsAfterSupersession.isEmpty && output.latestOrders.isEmpty)
    }

    @Test func aFirstRecentOrderGetsItsReceiptItsJourneyAndARecommendation() throws {
        var model = Self.receiptModel([Self.checkout("Order Completed", "o1", products: ["A", "B"])])
        model.bought(by: [9])
        model.follow([:])
        #expect(model.repeatBuyers.isEmpty)
        #expect(model.addresses == [Contacts.Key(storeID: Self.store, email: Self.ana)])
        #expect(model.buyers.map(\.shopperID) == [9])
        let queries = model.candidateQueries(preferences: [9: ShopperPreferences(interests: ["tea"])])
        #expect(queries.map(\.key) == [Self.key("o1")] && queries.first?.query.interests == ["tea"])
        #expect(queries.first?.query.seeds == ["A": 1, "B": 1], "seeded by the history after the batch")

        var found = Candidates()
        found.together = [("A", 3), ("C", 2), ("D", 1)]
        let (key, contact) = Self.contact()
        let output = model.apply(waiting: [:], contacts: [key: contact], preferences: [:], candidates: [Self.key("o1"): found])
        #expect(output.steps.map(\.template) == ["thank_you", "survey_invite", "why_we_exist", "next_sale", "walk_with_me"])
        #expect(output.steps.first?.dueAt == Self.day.addingTimeInterval(2 * 3600) && output.steps.allSatisfy { $0.orderID == "o1" && $0.shopperID == 9 })
        #expect(output.commands.map(\.name) == ["receipt", "recommend:post_purchase"])
        #expect(output.commands.allSatisfy { $0.source == Self.position(0) })
        let products = try #require(try JSONValue.parse(output.commands[1].value[...])["products"]?.arrayValue)
        #expect(products.compactMap { $0["product_id"]?.stringValue } == ["C", "D"], "what they just bought is not recommended")
        #expect(output.decisions.map(\.name) == ["receipt", "recommend:post_purchase"])
        #expect(
            output.decisions.map(\.commandID) == output.commands.map { Optional($0.id) }
                && output.decisions.allSatisfy { $0.contactID == 7 && $0.subject == "order:o1" })
    }

    @Test func receiptsComeBeforeRecommendationsAndAnOrderWithoutAnAddressGetsNoReceipt() {
        var model = Self.receiptModel([
            Self.checkout("Order Completed", "o1"), Self.checkout("Order Completed", "o2", email: nil, user: "u-2"),
            Self.checkout("Order Completed", "o3", user: "u-3"),
        ])
        model.bought(by: [1, 2, 3])
        model.follow([:])
        var found = Candidates()
        found.together = [("Z", 1)]
        let (key, contact) = Self.contact()
        let output = model.apply(
            waiting: [:], contacts: [key: contact], preferences: [:], candidates: [Self.key("o1"): found, Self.key("o3"): found])
        #expect(output.commands.map(\.name) == ["receipt", "receipt", "recommend:post_purchase", "recommend:post_purchase"])
        #expect(output.commands.map(\.source?.offset) == [0, 2, 0, 2])
        #expect(
            output.decisions.map { "\($0.subject) \($0.name) \($0.decision)" } == [
                "order:o1 receipt \(ContactDecision.send)", "order:o2 receipt \(ContactDecision.dropped(reason: "no_address"))",
                "order:o3 receipt \(ContactDecision.send)", "order:o1 recommend:post_purchase \(ContactDecision.send)",
                "order:o2 recommend:post_purchase \(ContactDecision.dropped(reason: "nothing_to_recommend"))",
                "order:o3 recommend:post_purchase \(ContactDecision.send)",
            ])
        #expect(output.steps.count == 10, "an order without an address starts no journey")
    }

    @Test func historyIsRecordedAndCountedButSaysNothing() {
        var model = Self.receiptModel([Self.checkout("Order Completed", "o1")], processedAt: Self.day.addingTimeInterval(4 * 86_400))
        model.bought(by: [9])
        model.follow([:])
        #expect(model.candidateQueries(preferences: [:]).isEmpty)
        let (key, contact) = Self.contact()
        let output = model.apply(waiting: [:], contacts: [key: contact], preferences: [:], candidates: [:])
        #expect(output.orders.count == 1 && output.modelChange.counts[Self.store]?.orders == ["A": 1])
        #expect(output.commands.isEmpty && output.steps.isEmpty)
        #expect(output.decisions.map(\.name) == ["receipt", "recommend:post_purchase"])
        #expect(output.decisions.allSatisfy { $0.decision == .dropped(reason: ConversationPolicy.staleEvent) && $0.commandID == nil })
    }

    /// Shopper 5 bought o0 forty days ago; its thank-you still waits.
    static func repeatBuyer(_ events: [ReceiptEvent]) -> (ReceiptModel, [Int64: [ScheduledStep]]) {
        let o0 = order("o0", days: -40, "A")
        var model = receiptModel(events, recorded: [key("o0"): OrderStore.Recorded(shopperID: 5, status: .completed, placedAt: o0.placedAt)])
        model.bought(by: [5])
        model.follow([5: [o0]])
        let waiting = ScheduledStep(
            storeID: store, journey: "orientation", template: "thank_you", shopperKey: "", shopperID: 5, email: nil, causationID: "m-o0", orderID: "o0",
            data: ["order_id": .string("o0"), "products": .array([.object(["product_id": .string("A")])])], dueAt: day)
        return (model, [5: [waiting]])
    }

    @Test func aRepeatOrderReplacesTheWaitingThankYouAndAnEndingAfterItIsAppliedAfterTheSupersession() throws {
        let (model, waiting) = Self.repeatBuyer([
            Self.checkout("Order Completed", "o1", products: ["B"]), Self.checkout("Order Refunded", "o0", minutes: 1),
        ])
        #expect(model.repeatBuyers.map(\.shopperID) == [5])
        #expect(model.after[5]?.map(\.orderID) == ["o1"])
        let output = model.apply(waiting: waiting, contacts: [:], preferences: [:], candidates: [:])
        #expect(output.steps.map(\.template) == ["thank_you"])
        let thankYou = try #require(output.steps.first)
        #expect(thankYou.data["order_ids"] == .array([.string("o1"), .string("o0")]), "one thank-you for both orders")
        #expect(thankYou.data["products"]?.arrayValue?.compactMap { $0["product_id"]?.stringValue } == ["B", "A"])
        #expect(
            output.latestOrders == [
                ReceiptModel.LatestOrder(
                    storeID: Self.store, shopperID: 5, causationID: "m-o1-Order Completed",
                    nextSaleAt: Self.day.addingTimeInterval(StoreSettings().journey.nextSale.seconds))
            ])
        #expect(output.endings.isEmpty)
        #expect(output.endingsAfterSupersession == [ReceiptModel.Ending(key: Self.key("o0"), status: .refunded, index: 1, orderArrivedAt: -1, shopperID: 5)])
    }

    @Test func anEndingBeforeTheRepeatOrderIsAppliedFirstAndLeavesAFirstOrder() {
        let (model, waiting) = Self.repeatBuyer([
            Self.checkout("Order Cancelled", "o0"), Self.checkout("Order Completed", "o1", minutes: 1, products: ["B"]),
        ])
        #expect(model.repeatBuyers.isEmpty, "with o0 cancelled, o1 is their first standing order")
        let output = model.apply(waiting: waiting, contacts: [:], preferences: [:], candidates: [:])
        #expect(output.steps.count == 5 && output.latestOrders.isEmpty)
        #expect(output.endings == [ReceiptModel.Ending(key: Self.key("o0"), status: .cancelled, index: 0, orderArrivedAt: -1, shopperID: 5)])
        #expect(output.endingsAfterSupersession.isEmpty)
    }
}
