import Foundation

/// One completed order as the next-sale model sees it: when, and which products (with their categories).
public struct PurchasedOrder: Sendable, Equatable {
    public var orderID: String
    public var placedAt: Date
    /// Each distinct product once, with its category where known.
    public var products: [Product]

    public struct Product: Sendable, Hashable {
        public var id: String
        public var category: String?

        public init(id: String, category: String?) {
            self.id = id
            self.category = category
        }
    }

    public init(orderID: String, placedAt: Date, products: [Product]) {
        self.orderID = orderID
        self.placedAt = placedAt
        var seen = Set<String>()
        self.products = products.filter { seen.insert($0.id).inserted }
    }

    /// A customer's orders in the order they were placed (ties by order id, so that every reader agrees).
    public static func sequence(_ orders: [PurchasedOrder]) -> [PurchasedOrder] {
        orders.sorted { ($0.placedAt, $0.orderID) < ($1.placedAt, $1.orderID) }
    }
}

/// A pair of keys, `from` then `to` (products, or categories).
public struct Pair: Sendable, Hashable {
    public var from: String
    public var to: String

    public init(_ from: String, _ to: String) {
        self.from = from
        self.to = to
    }
}

/// The counts the next-sale model is made of, for one customer or summed over a store. Kept incrementally: a change
/// to a customer's orders adds `counts(after) − counts(before)` of that customer, so that an order arriving late, a
/// refund or a cancellation leaves the same counts as if history had always been so.
///
/// - `orders[p]`: completed orders containing `p`; `followed[p]`: of those, the ones the customer followed with
///   another order (the confidence of `p → q` is `transitions[p → q] / followed[p]`).
/// - `transitions[p → q]`: consecutive orders of one customer, `p` in the first and `q` in the next.
/// - `together[p, q]`: `p` and `q` in one order (both directions).
/// - `categoryTransitions[c → d]`: as `transitions`, by category.
/// - `daily[p, day]`: orders containing `p` placed that day (UTC), for the store's recent top sellers.
public struct PurchaseCounts: Sendable, Equatable {
    public var orders: [String: Int] = [:]
    public var followed: [String: Int] = [:]
    public var transitions: [Pair: Int] = [:]
    public var together: [Pair: Int] = [:]
    public var categoryTransitions: [Pair: Int] = [:]
    public var daily: [Pair: Int] = [:]
    /// The category each product was last seen with.
    public var categories: [String: String] = [:]
    public var storeOrders = 0
    public var storeFollowed = 0

    public init() {}

    /// The counts of one customer's `orders` (any order: they are put in sequence first).
    public init(customer history: [PurchasedOrder]) {
        let sequence = PurchasedOrder.sequence(history)
        for (index, order) in sequence.enumerated() {
            let next = index + 1 < sequence.count ? sequence[index + 1] : nil
            storeOrders += 1
            if next != nil { storeFollowed += 1 }
            let day = PurchaseCounts.day(order.placedAt)
            for product in order.products {
                orders[product.id, default: 0] += 1
                if let category = product.category { categories[product.id] = category }
                daily[Pair(product.id, day), default: 0] += 1
                if next != nil { followed[product.id, default: 0] += 1 }
            }
            let paired = Self.paired(order)
            for product in paired {
                for other in paired where other.id != product.id { together[Pair(product.id, other.id), default: 0] += 1 }
            }
            guard let next else { continue }
            let successors = Self.paired(next)
            for product in paired {
                for successor in successors { transitions[Pair(product.id, successor.id), default: 0] += 1 }
            }
            let from = Set(order.products.compactMap(\.category))
            let to = Set(next.products.compactMap(\.category))
            for category in from { for successor in to { categoryTransitions[Pair(category, successor), default: 0] += 1 } }
        }
    }

    /// The most products of one order that pairs are counted among (`together`, `transitions`): pairs grow with the
    /// square of an order's size, and one order of 5,000 products would otherwise count 25 million of them.
    public static let pairedProducts = 50

    /// The products of `order` that pairs are counted among: all of them, or for a larger order the
    /// ``pairedProducts`` smallest ids — chosen by id, not by position, so that every reader of the order agrees.
    static func paired(_ order: PurchasedOrder) -> ArraySlice<PurchasedOrder.Product> {
        guard order.products.count > pairedProducts else { return order.products[...] }
        return order.products.sorted { $0.id < $1.id }.prefix(pairedProducts)
    }

    /// Orders containing each product placed in the `window` up to `asOf` (by UTC day): the store's recent sales, as
    /// `receipt_top_sellers` sums them.
    public func sales(within window: TimeInterval, endingAt asOf: Date) -> [String: Int] {
        let since = Self.day(asOf.addingTimeInterval(-window))
        let until = Self.day(asOf)
        var sales: [String: Int] = [:]
        for (pair, orders) in daily where pair.to > since && pair.to <= until { sales[pair.from, default: 0] += orders }
        return sales
    }

    /// `yyyy-MM-dd` of `date` in UTC.
    public static func day(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
    }

    /// Adds `other` times `sign` (1 to add a customer's counts, −1 to take them out); zero entries are removed.
    public mutating func add(_ other: PurchaseCounts, sign: Int = 1) {
        func merge<Key>(_ mine: inout [Key: Int], _ theirs: [Key: Int]) {
            for (key, value) in theirs {
                let sum = mine[key, default: 0] + sign * value
                mine[key] = sum == 0 ? nil : sum
            }
        }
        merge(&orders, other.orders)
        merge(&followed, other.followed)
        merge(&transitions, other.transitions)
        merge(&together, other.together)
        merge(&categoryTransitions, other.categoryTransitions)
        merge(&daily, other.daily)
        if sign > 0 { categories.merge(other.categories) { _, new in new } }
        storeOrders += sign * other.storeOrders
        storeFollowed += sign * other.storeFollowed
    }

    /// What changes when a customer's orders go from `before` to `after`.
    public static func change(from before: [PurchasedOrder], to after: [PurchasedOrder]) -> PurchaseCounts {
        var delta = PurchaseCounts(customer: after)
        delta.add(PurchaseCounts(customer: before), sign: -1)
        return delta
    }

    /// Whether nothing changes.
    public var isEmpty: Bool {
        orders.isEmpty && followed.isEmpty && transitions.isEmpty && together.isEmpty && categoryTransitions.isEmpty && daily.isEmpty
            && storeOrders == 0 && storeFollowed == 0
    }
}
