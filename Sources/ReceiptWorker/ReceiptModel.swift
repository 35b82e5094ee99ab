import Foundation
import InboundEvents
import NextSale
import Shared

/// Everything a batch of `checkout-events` changes, decided in memory in partition order; ``ReceiptHandler`` loads
/// what it reads and writes ``Output`` afterwards, set-based. Pure: no I/O, so that its rules are tested directly.
///
/// The model is fed in the order the handler can load: the batch's orders against those recorded before
/// (``init(stores:topics:processedAt:recorded:events:)``), their buyers (``bought(by:)``), the customers' histories
/// before the batch (``follow(_:)``), and then the journey's waiting thank-yous, the contacts, the shoppers'
/// preferences and the recommendation candidates (``apply(waiting:contacts:preferences:candidates:)``).
struct ReceiptModel {
    /// A new order of the batch, with how it stands at the batch's end.
    struct NewOrder {
        var event: ReceiptEvent
        var order: ReceiptEvent.Order
        /// Where the order's message was read: its commands carry it.
        var source: MessagePosition
        /// The buyer: the shared shopper their identities resolve to.
        var shopperID: Int64 = 0
        var status = OrderStatus.completed
        var endedAt: Date?
        /// Its place in the batch's timeline of arrivals and endings.
        var arrivedAt = 0
        /// The buyer's orders that stood when this one arrived, in the order they were placed (this one among them):
        /// what the journey is decided from, as if the batch were applied one event at a time.
        var history: [PurchasedOrder] = []

        var key: OrderStore.Key { OrderStore.Key(storeID: event.message.storeID, orderID: order.orderID) }

        /// The order as the next-sale model sees it.
        var purchased: PurchasedOrder {
            PurchasedOrder(
                orderID: order.orderID, placedAt: event.message.timestamp,
                products: order.items.map { PurchasedOrder.Product(id: $0.productID, category: $0.category) })
        }
    }

    /// A refund or cancellation of the batch, at its place in the batch's timeline.
    struct Ending: Equatable {
        var key: OrderStore.Key
        var status: OrderStatus
        var index: Int
        /// Where the order it ends arrived in the timeline; -1 for an order recorded before the batch.
        var orderArrivedAt: Int
        var shopperID: Int64?
    }

    /// A customer's repeat order of the batch that is their latest: it supersedes the thank-yous other orders still
    /// wait for, and moves the pending next sale to follow it.
    struct LatestOrder: Equatable {
        var storeID: String
        var shopperID: Int64
        var causationID: String
        var nextSaleAt: Date
    }

    /// What the batch writes and sends, in the order ``ReceiptHandler`` writes it.
    struct Output {
        /// New orders, in the order they arrived, each with the status the batch ended with.
        var orders: [NewOrder] = []
        /// Orders recorded before the batch that it refunded or cancelled.
        var ended: [(key: OrderStore.Key, status: OrderStatus, at: Date)] = []
        /// The next-sale model's change.
        var modelChange = PurchaseModelChange()
        /// The journey steps to schedule.
        var steps: [ScheduledStep] = []
        /// The endings whose orders' steps are cancelled before ``latestOrders`` supersede thank-yous: those with no
        /// repeat order of the customer between the order's arrival and the ending.
        var endings: [Ending] = []
        /// By shopper id.
        var latestOrders: [LatestOrder] = []
        /// The endings whose orders' steps are cancelled after the supersession.
        var endingsAfterSupersession: [Ending] = []
        /// The decisions about emails and recommendations, as recorded.
        var decisions: [ContactDecisionLog.Entry] = []
        /// The receipts, then the recommendations.
        var commands: [OutboundCommand] = []
    }

    /// How many products a `post_purchase` recommendation lists.
    static let recommendationLimit = 10
    /// The worker named in every decision it records.
    static let worker = "ReceiptWorker"

    let stores: StoreDirectory
    let topics: Topics
    /// What "now" is for history-is-not-a-conversation.
    let processedAt: Date
    /// The batch's orders recorded before it.
    let recorded: [OrderStore.Key: OrderStore.Recorded]

    private(set) var newOrders: [OrderStore.Key: NewOrder] = [:]
    /// The new orders' keys, in the order they arrived.
    private(set) var arrival: [OrderStore.Key] = []
    /// Orders recorded before the batch that it ends.
    private(set) var ended: [(key: OrderStore.Key, status: OrderStatus, at: Date)] = []
    /// The customers whose sequence of standing orders the batch changes: shopper → store.
    private(set) var customers: [Int64: String] = [:]
    /// The batch's arrivals and endings in partition order: the journey of an order is decided as it stood when it
    /// arrived, whatever later events of the same batch do to it (a refund seconds later ends its journey; it does not
    /// take back its receipt).
    private(set) var timeline: [(key: OrderStore.Key, ending: OrderStatus?)] = []
    /// Each customer's standing orders before the batch, and after it.
    private(set) var before: [Int64: [PurchasedOrder]] = [:]
    private(set) var after: [Int64: [PurchasedOrder]] = [:]

    /// The orders the batch's events are about: what the handler reads of `receipt_orders` first.
    static func orderKeys(_ events: [ReceiptEvent]) -> Set<OrderStore.Key> {
        var keys = Set<OrderStore.Key>()
        for event in events {
            switch event.action {
            case .completed(let order): keys.insert(.init(storeID: event.message.storeID, orderID: order.orderID))
            case .refunded(let id), .cancelled(let id): keys.insert(.init(storeID: event.message.storeID, orderID: id))
            case .other: break
            }
        }
        return keys
    }

    /// The batch's orders, in its order: an order id seen before (in `recorded` or earlier in the batch) changes nothing;
    /// a refund or cancellation ends an order that stands, once.
    init(
        stores: StoreDirectory, topics: Topics, processedAt: Date, recorded: [OrderStore.Key: OrderStore.Recorded],
        events: [(event: ReceiptEvent, source: MessagePosition)]
    ) {
        self.stores = stores
        self.topics = topics
        self.processedAt = processedAt
        self.recorded = recorded
        for (event, source) in events {
            let store = event.message.storeID
            switch event.action {
            case .completed(let order):
                let key = OrderStore.Key(storeID: store, orderID: order.orderID)
                guard recorded[key] == nil, newOrders[key] == nil else { continue }
                newOrders[key] = NewOrder(event: event, order: order, source: source, arrivedAt: timeline.count)
                arrival.append(key)
                timeline.append((key, nil))
            case .refunded(let id), .cancelled(let id):
                let key = OrderStore.Key(storeID: store, orderID: id)
                let status: OrderStatus = if case .refunded = event.action { .refunded } else { .cancelled }
                if var new = newOrders[key], new.status == .completed {
                    new.status = status
                    new.endedAt = event.message.timestamp
                    newOrders[key] = new
                    timeline.append((key, status))
                } else if let old = recorded[key], old.status == .completed, !ended.contains(where: { $0.key == key }) {
                    ended.append((key, status, event.message.timestamp))
                    if let shopper = old.shopperID { customers[shopper] = store }
                    timeline.append((key, status))
                }
            case .other:
                break
            }
        }
    }

    /// The batch's new orders, in the order they arrived.
    var orders: [NewOrder] { arrival.compactMap { newOrders[$0] } }

    /// Records the buyers of ``orders`` (the shared shoppers their identities resolved to), in the same order.
    mutating func bought(by shoppers: [Int64]) {
        for (key, shopper) in zip(arrival, shoppers) {
            newOrders[key]?.shopperID = shopper
            customers[shopper] = key.storeID
        }
    }

    /// The customers whose histories the batch changes, by shopper id.
    var customerKeys: [(store: String, shopperID: Int64)] { customers.sorted { $0.key < $1.key }.map { ($0.value, $0.key) } }

    /// Follows each customer's sequence of completed orders from `histories` (before the batch), event by event: each
    /// new order's history as it arrived, and at the end every order that stands.
    mutating func follow(_ histories: [Int64: [PurchasedOrder]]) {
        before = histories
        after = histories
        for (key, ending) in timeline {
            if ending != nil {
                guard let customer = newOrders[key]?.shopperID ?? recorded[key]?.shopperID else { continue }
                after[customer]?.removeAll { $0.orderID == key.orderID }
            } else if let new = newOrders[key] {
                after[new.shopperID, default: []].append(new.purchased)
                newOrders[key]?.history = PurchasedOrder.sequence(after[new.shopperID] ?? [])
            }
        }
    }

    /// Whether `new` is history: old enough that it starts no conversation.
    private func isStale(_ new: NewOrder) -> Bool {
        ConversationPolicy(settings: stores.settings(for: new.event.message.storeID)).staleness(of: new.event.message.timestamp, processedAt: processedAt)
            != nil
    }

    /// The order's place in the history it arrived to, when it starts or continues a conversation.
    private func position(_ new: NewOrder) -> Int? {
        guard new.order.email != nil, !isStale(new) else { return nil }
        return new.history.firstIndex { $0.orderID == new.order.orderID }
    }

    /// The customers of repeat orders that are their latest: whose thank-yous still waiting the handler reads.
    var repeatBuyers: [(store: String, shopperID: Int64)] {
        orders.filter { new in position(new).map { $0 > 0 && $0 == new.history.count - 1 } ?? false }.map { ($0.event.message.storeID, $0.shopperID) }
    }

    /// The addresses the new orders were placed with.
    var addresses: Set<Contacts.Key> {
        Set(orders.compactMap { new in new.order.email.map { Contacts.Key(storeID: new.event.message.storeID, email: $0.value) } })
    }

    /// The buyers of the new orders, by shopper id: whose stated preferences the handler reads.
    var buyers: [(store: String, shopperID: Int64)] {
        Dictionary(orders.map { ($0.shopperID, $0.event.message.storeID) }, uniquingKeysWith: { first, _ in first }).sorted { $0.key < $1.key }
            .map { ($0.value, $0.key) }
    }

    /// The candidate query of each new order that is recent (a `post_purchase` recommendation is decided for it), in
    /// arrival order: its customer's history after the batch, leaning towards the interests a survey stated.
    func candidateQueries(preferences: [Int64: ShopperPreferences]) -> [(key: OrderStore.Key, query: CandidateQuery)] {
        orders.filter { !isStale($0) }.map { new in
            (
                new.key,
                CandidateQuery(
                    storeID: new.event.message.storeID, history: after[new.shopperID] ?? [], interests: preferences[new.shopperID]?.interests ?? [],
                    shopperID: new.shopperID)
            )
        }
    }

    /// What the batch writes and sends, given the thank-yous still waiting for ``repeatBuyers`` (by shopper), the
    /// contacts of ``addresses``, the preferences of ``buyers`` and the candidates of ``candidateQueries(preferences:)``
    /// (by order).
    func apply(
        waiting: [Int64: [ScheduledStep]], contacts: [Contacts.Key: Contacts.Contact], preferences: [Int64: ShopperPreferences],
        candidates: [OrderStore.Key: Candidates]
    ) -> Output {
        var output = Output()
        let orders = self.orders
        output.orders = orders
        output.ended = ended
        for (customer, store) in customers {
            output.modelChange.add(store: store, shopperID: customer, from: before[customer] ?? [], to: after[customer] ?? [])
        }
        schedule(orders, waiting: waiting, into: &output)
        converse(orders, contacts: contacts, preferences: preferences, candidates: candidates, into: &output)
        return output
    }

    /// The orientation journey, each order as it stood when it arrived: a customer's first order schedules its five
    /// steps. A repeat order that is the customer's latest replaces the thank-you still waiting for an earlier order
    /// with one of its own that names what they bought in both (the earlier one ends, `superseded_by_newer_order`);
    /// with none waiting, it earns a thank-you when the previous order is over 30 days old (a thank-you already sent
    /// is not sent again for an order days later). It moves the pending next sale to follow it. A refund or a
    /// cancellation ends the steps of its order — also of an order that arrived earlier in the same batch, whose steps
    /// are scheduled first, as they would have been one event at a time. Old orders (history) schedule nothing.
    ///
    /// Every cancellation records the reason it would have had one event at a time: a waiting thank-you ends with the
    /// first event after it that ends it — its order's refund or cancellation (`order_refunded`), or a later repeat
    /// order of the customer (`superseded_by_newer_order`). So an ending with no repeat order between its order's
    /// arrival and itself is applied before the supersession, every other after it.
    private func schedule(_ orders: [NewOrder], waiting: [Int64: [ScheduledStep]], into output: inout Output) {
        var waiting = waiting
        var latest: [Int64: LatestOrder] = [:]
        var repeats: [Int64: [Int]] = [:]  // shopper → timeline indices of their repeat orders of the batch, ascending
        for new in orders {
            guard let position = position(new), let email = new.order.email else { continue }
            let message = new.event.message
            let settings = stores.settings(for: message.storeID)
            func step(_ template: EmailTemplate, after delay: Duration, data: [String: JSONValue] = Journey.stepData(new.order)) -> ScheduledStep {
                ScheduledStep(
                    storeID: message.storeID, journey: Journey.name, template: template.name, shopperKey: message.shopperKey, shopperID: new.shopperID,
                    email: email.value, causationID: message.messageID, orderID: new.order.orderID, data: data,
                    dueAt: message.timestamp.addingTimeInterval(delay.seconds))
            }
            if position == 0 {
                let first = Journey.firstOrderSteps(settings: settings).map { step($0.0, after: $0.1) }
                output.steps += first
                waiting[new.shopperID, default: []] += first.filter { $0.template == EmailTemplate.thankYou.name }
            } else if position == new.history.count - 1 {
                // Thank-yous still waiting for orders that stand: this order's thank-you takes their place.
                let standing = Set(new.history.map(\.orderID))
                let earlier = (waiting[new.shopperID] ?? []).filter { $0.orderID.map(standing.contains) ?? false }
                if !earlier.isEmpty {
                    let thankYou = step(.thankYou, after: settings.journey.thankYou, data: Journey.thankYouData(new.order, replacing: earlier))
                    output.steps.append(thankYou)
                    waiting[new.shopperID] = [thankYou]
                } else if message.timestamp.timeIntervalSince(new.history[position - 1].placedAt) > Journey.repeatThankYouGap {
                    let thankYou = step(.thankYou, after: settings.journey.thankYou)
                    output.steps.append(thankYou)
                    waiting[new.shopperID] = [thankYou]
                }
                latest[new.shopperID] = LatestOrder(
                    storeID: message.storeID, shopperID: new.shopperID, causationID: message.messageID,
                    nextSaleAt: message.timestamp.addingTimeInterval(settings.journey.nextSale.seconds))
                repeats[new.shopperID, default: []].append(new.arrivedAt)
            }
        }
        /// Whether a repeat order of the ending's customer arrived after the order it ends and before the ending.
        func superseded(_ ending: Ending) -> Bool {
            guard let indices = ending.shopperID.flatMap({ repeats[$0] }) else { return false }
            // The first repeat after the order's arrival, by binary search (the indices ascend).
            var low = 0
            var high = indices.count
            while low < high {
                let middle = (low + high) / 2
                if indices[middle] <= ending.orderArrivedAt { low = middle + 1 } else { high = middle }
            }
            return low < indices.count && indices[low] < ending.index
        }
        let endings = timeline.enumerated().compactMap { index, entry -> Ending? in
            entry.ending.map { status in
                let new = newOrders[entry.key]
                return Ending(
                    key: entry.key, status: status, index: index, orderArrivedAt: new?.arrivedAt ?? -1,
                    shopperID: new?.shopperID ?? recorded[entry.key]?.shopperID)
            }
        }
        output.endings = endings.filter { !superseded($0) }
        output.latestOrders = latest.sorted { $0.key < $1.key }.map(\.value)
        output.endingsAfterSupersession = endings.filter(superseded)
    }

    /// The receipt and the `post_purchase` recommendation of each new order that is recent and still stands.
    private func converse(
        _ orders: [NewOrder], contacts: [Contacts.Key: Contacts.Contact], preferences: [Int64: ShopperPreferences], candidates: [OrderStore.Key: Candidates],
        into output: inout Output
    ) {
        var recommending: [(order: NewOrder, contact: Contacts.Contact?, excluded: Set<String>)] = []
        for new in orders {
            let message = new.event.message
            let settings = stores.settings(for: message.storeID)
            let policy = ConversationPolicy(settings: settings)
            let contact = new.order.email.flatMap { contacts[Contacts.Key(storeID: message.storeID, email: $0.value)] }
            let subject = Self.subject(new)
            func decided(_ template: EmailTemplate, _ decision: ContactDecision, command: String? = nil) {
                output.decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: contact?.contactID, subject: subject, worker: Self.worker, template: template,
                        decision: decision, commandID: command, causationID: message.messageID, decidedAt: message.timestamp))
            }
            if let stale = policy.staleness(of: message.timestamp, processedAt: processedAt) {
                decided(.receipt, stale)
                output.decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: contact?.contactID, subject: subject, worker: Self.worker, recommendation: "post_purchase",
                        commandID: nil, causationID: message.messageID, decidedAt: message.timestamp, decision: stale))
                continue
            }
            if let contact {
                let decision = policy.decide(.receipt, for: contact.permission, at: message.timestamp, direct: true, sentMarketing: [])
                if decision == .send {
                    let locale = message.context["locale"]?.stringValue ?? contact.locale ?? settings.locale
                    let name = [new.order.firstName, new.order.lastName].compactMap { $0 }.joined(separator: " ")
                    let command = EmailCommand.make(
                        template: .receipt, storeID: message.storeID, causationID: message.messageID, key: message.shopperKey, email: contact.email,
                        name: name.isEmpty ? nil : name, locale: locale, settings: settings,
                        data: Receipt.data(new.order, placedAt: message.timestamp, locale: locale, settings: settings), unsubscribeToken: nil,
                        createdAt: message.timestamp, topic: topics.emailCommands)
                    output.commands.append(command.caused(by: new.source))
                    decided(.receipt, decision, command: command.id)
                } else {
                    decided(.receipt, decision)
                }
            } else {
                decided(.receipt, .dropped(reason: "no_address"))
            }
            let history = after[new.shopperID] ?? []
            recommending.append((new, contact, Set(history.flatMap { $0.products.map(\.id) }).union(new.order.items.map(\.productID))))
        }
        for entry in recommending {
            let message = entry.order.event.message
            let products = Recommender.rank(candidates[entry.order.key] ?? Candidates(), excluding: entry.excluded, limit: Self.recommendationLimit)
            guard !products.isEmpty else {
                // A store's first orders (or ones the last fold has not reached yet): an empty list helps no one.
                output.decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: entry.contact?.contactID, subject: Self.subject(entry.order), worker: Self.worker,
                        recommendation: "post_purchase", commandID: nil, causationID: message.messageID, decidedAt: message.timestamp,
                        decision: .dropped(reason: "nothing_to_recommend")))
                continue
            }
            let command = RecommendationCommand.make(
                context: "post_purchase", storeID: message.storeID, causationID: message.messageID, key: message.shopperKey, userID: message.userID,
                anonymousID: message.anonymousID, email: entry.order.order.email?.value, products: Receipt.products(products),
                createdAt: message.timestamp, topic: topics.recommendationCommands)
            output.commands.append(command.caused(by: entry.order.source))
            output.decisions.append(
                ContactDecisionLog.Entry(
                    storeID: message.storeID, contactID: entry.contact?.contactID, subject: Self.subject(entry.order), worker: Self.worker,
                    recommendation: "post_purchase", commandID: command.id, causationID: message.messageID, decidedAt: message.timestamp))
        }
    }

    /// How decisions name an order.
    static func subject(_ new: NewOrder) -> String { "order:\(new.order.orderID)" }
}
