import Foundation
import NextSale
import InboundEvents
import Shared

/// ReceiptWorker's behaviour: for a batch of `checkout-events`, record orders (once per store and order id, whatever
/// the message id), refunds and cancellations; keep the next-sale model in step with every customer's orders; and for
/// each new, recent order send the receipt and a `post_purchase` recommendation — set-based, a fixed number of
/// statements per batch.
struct ReceiptHandler: PipelineHandler {
    let stores: StoreDirectory
    let topics: Topics
    /// The consumer group, which owns the journey steps this worker schedules (its scheduler claims them).
    let groupID: String
    /// The batch's clock: what "now" is for history-is-not-a-conversation and the top sellers' 90 days.
    let clock: @Sendable () -> Date

    /// How many products a `post_purchase` recommendation lists.
    static let recommendationLimit = 10
    /// The worker named in every decision it records.
    static let worker = "ReceiptWorker"

    /// Reads `STORE_SETTINGS_FILE` and `KAFKA_GROUP_ID` (as the runtime does).
    /// - Throws: ``ConfigurationError`` naming the variable.
    init(topics: Topics, environment: Environment, clock: @escaping @Sendable () -> Date = { Date() }) throws {
        stores = try StoreDirectory(environment: environment)
        groupID = try environment.string("KAFKA_GROUP_ID", default: ReceiptWorker.descriptor.defaultGroupID)
        self.topics = topics
        self.clock = clock
    }

    func decode(_ message: SegmentMessage) throws(DecodeFailure) -> ReceiptEvent {
        try ReceiptEvent(message)
    }

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
    }

    func handle(_ events: [InboundEvent<ReceiptEvent>], connection: PostgresConnection) throws -> [OutboundCommand] {
        let now = clock()
        let parsed = events.map(\.event)

        // Orders, in the batch's order: an order id seen before (in PostgreSQL or earlier in the batch) changes nothing.
        var keys = Set<OrderStore.Key>()
        for event in parsed {
            switch event.action {
            case .completed(let order): keys.insert(.init(storeID: event.message.storeID, orderID: order.orderID))
            case .refunded(let id), .cancelled(let id): keys.insert(.init(storeID: event.message.storeID, orderID: id))
            case .other: break
            }
        }
        guard !keys.isEmpty else { return [] }
        let recorded = try OrderStore.recorded(keys, connection: connection)
        var newOrders: [OrderStore.Key: NewOrder] = [:]
        var arrival: [OrderStore.Key] = []
        var ended: [(key: OrderStore.Key, status: OrderStatus, at: Date)] = []
        var customers: [Int64: String] = [:]  // shopper → store
        // The batch's arrivals and endings in partition order: the journey of an order is decided as it stood when it
        // arrived, whatever later events of the same batch do to it (a refund seconds later ends its journey; it does
        // not take back its receipt).
        var timeline: [(key: OrderStore.Key, ending: OrderStatus?)] = []
        for inbound in events {
            let event = inbound.event
            let store = event.message.storeID
            switch event.action {
            case .completed(let order):
                let key = OrderStore.Key(storeID: store, orderID: order.orderID)
                guard recorded[key] == nil, newOrders[key] == nil else { continue }
                newOrders[key] = NewOrder(event: event, order: order, source: inbound.source.position, arrivedAt: timeline.count)
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

        // One shopper across workers: each new order's buyer, resolved the way every worker resolves shoppers.
        let buyers = try ShopperResolver.resolve(
            arrival.compactMap { newOrders[$0] }.map { ($0.event.message.storeID, $0.event.identities) }, connection: connection)
        for (key, shopper) in zip(arrival, buyers.shoppers) {
            newOrders[key]?.shopperID = shopper
            customers[shopper] = key.storeID
        }

        // The model follows each customer's sequence of completed orders: before the batch, and after it.
        let before = try PurchaseHistory.load(customers.sorted { $0.key < $1.key }.map { ($0.value, $0.key) }, connection: connection)
        // Walked event by event: each new order's history as it arrived, and at the end every order that stands.
        var after = before
        for (key, ending) in timeline {
            if ending != nil {
                guard let customer = newOrders[key]?.shopperID ?? recorded[key]?.shopperID else { continue }
                after[customer]?.removeAll { $0.orderID == key.orderID }
            } else if let new = newOrders[key] {
                after[new.shopperID, default: []].append(Self.purchased(new))
                newOrders[key]?.history = PurchasedOrder.sequence(after[new.shopperID] ?? [])
            }
        }
        var changes: [String: PurchaseCounts] = [:]
        for (customer, store) in customers {
            let change = PurchaseCounts.change(from: before[customer] ?? [], to: after[customer] ?? [])
            if !change.isEmpty { changes[store, default: PurchaseCounts()].add(change) }
        }
        try OrderStore.insert(arrival.compactMap { newOrders[$0] }.map { ($0.event, $0.order, $0.shopperID, $0.status, $0.endedAt) }, connection: connection)
        try OrderStore.end(ended, connection: connection)
        try PurchaseModelStore.record(changes, connection: connection)
        let endings = timeline.enumerated().compactMap { index, entry -> Ending? in
            entry.ending.map { status in
                let new = newOrders[entry.key]
                return Ending(key: entry.key, status: status, index: index, orderArrivedAt: new?.arrivedAt ?? -1, shopperID: new?.shopperID ?? recorded[entry.key]?.shopperID)
            }
        }
        try schedule(arrival.compactMap { newOrders[$0] }, endings: endings, now: now, connection: connection)

        return try converse(arrival.compactMap { newOrders[$0] }, histories: after, now: now, connection: connection)
    }

    /// The receipt and the `post_purchase` recommendation of each new order that is recent and still stands.
    private func converse(_ orders: [NewOrder], histories: [Int64: [PurchasedOrder]], now: Date, connection: PostgresConnection) throws -> [OutboundCommand] {
        var decisions: [ContactDecisionLog.Entry] = []
        var commands: [OutboundCommand] = []
        let addresses = Set(orders.compactMap { new in new.order.email.map { Contacts.Key(storeID: new.event.message.storeID, email: $0.value) } })
        let contacts = try Contacts.given(addresses, connection: connection)
        // The interests a survey stated (SurveyWorker) lean the list towards them.
        let preferences = try ShopperPreferences.load(
            Dictionary(orders.map { ($0.shopperID, $0.event.message.storeID) }, uniquingKeysWith: { first, _ in first }).sorted { $0.key < $1.key }
                .map { ($0.value, $0.key) }, connection: connection)
        var recommending: [(order: NewOrder, contact: Contacts.Contact?, query: CandidateQuery, excluded: Set<String>)] = []
        for new in orders {
            let message = new.event.message
            let settings = stores.settings(for: message.storeID)
            let policy = ConversationPolicy(settings: settings)
            let contact = new.order.email.flatMap { contacts[Contacts.Key(storeID: message.storeID, email: $0.value)] }
            let subject = "order:\(new.order.orderID)"
            func decided(_ template: EmailTemplate, _ decision: ContactDecision, command: String? = nil) {
                decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: contact?.contactID, subject: subject, worker: Self.worker, template: template,
                        decision: decision, commandID: command, causationID: message.messageID, decidedAt: message.timestamp))
            }
            if let stale = policy.staleness(of: message.timestamp, processedAt: now) {
                decided(.receipt, stale)
                decisions.append(
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
                    commands.append(command.caused(by: new.source))
                    decided(.receipt, decision, command: command.id)
                } else {
                    decided(.receipt, decision)
                }
            } else {
                decided(.receipt, .dropped(reason: "no_address"))
            }
            let history = histories[new.shopperID] ?? []
            let bought = Set(history.flatMap { $0.products.map(\.id) }).union(new.order.items.map(\.productID))
            recommending.append(
                (new, contact, CandidateQuery(storeID: message.storeID, history: history, interests: preferences[new.shopperID]?.interests ?? []), bought))
        }
        let candidates = try PostgresCandidateSource(connection: connection, asOf: now).candidates(for: recommending.map(\.query))
        for (entry, found) in zip(recommending, candidates) {
            let message = entry.order.event.message
            let products = Recommender.rank(found, excluding: entry.excluded, limit: Self.recommendationLimit)
            guard !products.isEmpty else {
                // A store's first orders (or ones the last fold has not reached yet): an empty list helps no one.
                decisions.append(
                    ContactDecisionLog.Entry(
                        storeID: message.storeID, contactID: entry.contact?.contactID, subject: "order:\(entry.order.order.orderID)", worker: Self.worker,
                        recommendation: "post_purchase", commandID: nil, causationID: message.messageID, decidedAt: message.timestamp,
                        decision: .dropped(reason: "nothing_to_recommend")))
                continue
            }
            let command = RecommendationCommand.make(
                context: "post_purchase", storeID: message.storeID, causationID: message.messageID, key: message.shopperKey, userID: message.userID,
                anonymousID: message.anonymousID, email: entry.order.order.email?.value, products: Receipt.products(products),
                createdAt: message.timestamp, topic: topics.recommendationCommands)
            commands.append(command.caused(by: entry.order.source))
            decisions.append(
                ContactDecisionLog.Entry(
                    storeID: message.storeID, contactID: entry.contact?.contactID, subject: "order:\(entry.order.order.orderID)", worker: Self.worker,
                    recommendation: "post_purchase", commandID: command.id, causationID: message.messageID, decidedAt: message.timestamp))
        }
        try ContactDecisionLog.record(decisions, connection: connection)
        return commands
    }

    /// A refund or cancellation of the batch, at its place in the batch's timeline.
    struct Ending {
        var key: OrderStore.Key
        var status: OrderStatus
        var index: Int
        /// Where the order it ends arrived in the timeline; -1 for an order recorded before the batch.
        var orderArrivedAt: Int
        var shopperID: Int64?
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
    private func schedule(_ orders: [NewOrder], endings: [Ending], now: Date, connection: PostgresConnection) throws {
        /// The order's place in the history it arrived to, when it starts or continues a conversation.
        func position(_ new: NewOrder) -> Int? {
            let settings = stores.settings(for: new.event.message.storeID)
            guard new.order.email != nil, ConversationPolicy(settings: settings).staleness(of: new.event.message.timestamp, processedAt: now) == nil
            else { return nil }
            return new.history.firstIndex { $0.orderID == new.order.orderID }
        }
        let repeatBuyers = orders.filter { new in position(new).map { $0 > 0 && $0 == new.history.count - 1 } ?? false }
        var waiting = try Self.waitingThankYous(repeatBuyers.map { ($0.event.message.storeID, $0.shopperID) }, connection: connection)
        var steps: [ScheduledStep] = []
        var latest: [Int64: (store: String, causation: String, nextSaleAt: Date)] = [:]
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
                steps += first
                waiting[new.shopperID, default: []] += first.filter { $0.template == EmailTemplate.thankYou.name }
            } else if position == new.history.count - 1 {
                // Thank-yous still waiting for orders that stand: this order's thank-you takes their place.
                let standing = Set(new.history.map(\.orderID))
                let earlier = (waiting[new.shopperID] ?? []).filter { $0.orderID.map(standing.contains) ?? false }
                if !earlier.isEmpty {
                    let thankYou = step(.thankYou, after: settings.journey.thankYou, data: Journey.thankYouData(new.order, replacing: earlier))
                    steps.append(thankYou)
                    waiting[new.shopperID] = [thankYou]
                } else if message.timestamp.timeIntervalSince(new.history[position - 1].placedAt) > Journey.repeatThankYouGap {
                    let thankYou = step(.thankYou, after: settings.journey.thankYou)
                    steps.append(thankYou)
                    waiting[new.shopperID] = [thankYou]
                }
                latest[new.shopperID] = (message.storeID, message.messageID, message.timestamp.addingTimeInterval(settings.journey.nextSale.seconds))
                repeats[new.shopperID, default: []].append(new.arrivedAt)
            }
        }
        try StepStore.schedule(steps, group: groupID, connection: connection)
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
        try Self.cancel(endings.filter { !superseded($0) }, connection: connection)
        if !latest.isEmpty {
            let customers = latest.sorted { $0.key < $1.key }
            let (stores, shoppers, causations) =
                (PostgresArray(customers.map(\.value.store)), PostgresArray(customers.map(\.key)), PostgresArray(customers.map(\.value.causation)))
            try StepStore.cancel(
                where: "(store_id, shopper_id) IN (SELECT * FROM unnest(\(stores)::text[], \(shoppers)::bigint[])) AND causation_id <> ALL(\(causations)::text[])",
                templates: [EmailTemplate.thankYou.name], reason: "superseded_by_newer_order", connection: connection)
            try StepStore.retime(
                template: EmailTemplate.nextSale.name, shoppers: customers.map { ($0.value.store, $0.key, $0.value.nextSaleAt) }, connection: connection)
        }
        try Self.cancel(endings.filter(superseded), connection: connection)
    }

    /// Ends the pending steps of the orders `endings` refunded or cancelled, each with its reason.
    private static func cancel(_ endings: [Ending], connection: PostgresConnection) throws {
        for status in OrderStatus.endings {
            let keys = endings.filter { $0.status == status }.map(\.key)
            guard !keys.isEmpty else { continue }
            try StepStore.cancel(
                where: "(store_id, order_id) IN (SELECT * FROM unnest(\(PostgresArray(keys.map(\.storeID)))::text[], \(PostgresArray(keys.map(\.orderID)))::text[]))",
                reason: status.stepCancellationReason, connection: connection)
        }
    }

    /// The thank-you steps still pending for `shoppers`, by shopper: a probe of the steps' shopper index each.
    static func waitingThankYous(_ shoppers: [(store: String, shopperID: Int64)], connection: PostgresConnection) throws -> [Int64: [ScheduledStep]] {
        guard !shoppers.isEmpty else { return [:] }
        var waiting: [Int64: [ScheduledStep]] = [:]
        for (store, shopper, causation, order, data, due) in try connection.query(
            """
            SELECT s.store_id, s.shopper_id, s.causation_id, s.order_id, s.data, s.due_at
            FROM unnest(\(PostgresArray(shoppers.map(\.store)))::text[], \(PostgresArray(shoppers.map(\.shopperID)))::bigint[]) AS u(store_id, shopper_id)
            JOIN rapport_scheduled_steps s ON s.store_id = u.store_id AND s.shopper_id = u.shopper_id
            WHERE s.template = \(EmailTemplate.thankYou.name) AND s.state = 'pending'
            ORDER BY s.step_id
            """
        ).decode((String, Int64, String, String?, JSONValue, Date).self) {
            waiting[shopper, default: []].append(
                ScheduledStep(
                    storeID: store, journey: Journey.name, template: EmailTemplate.thankYou.name, shopperKey: "", shopperID: shopper, email: nil,
                    causationID: causation, orderID: order, data: data.objectValue ?? [:], dueAt: due))
        }
        return waiting
    }

    /// A new order as the model sees it.
    static func purchased(_ new: NewOrder) -> PurchasedOrder {
        PurchasedOrder(
            orderID: new.order.orderID, placedAt: new.event.message.timestamp,
            products: new.order.items.map { PurchasedOrder.Product(id: $0.productID, category: $0.category) })
    }
}
