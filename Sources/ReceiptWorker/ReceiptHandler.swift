import Foundation
import InboundEvents
import NextSale
import Shared

/// ReceiptWorker's behaviour: for a batch of `checkout-events`, record orders (once per store and order id, whatever
/// the message id), refunds and cancellations; keep the next-sale model in step with every customer's orders; and for
/// each new, recent order send the receipt and a `post_purchase` recommendation. It loads what the batch reads,
/// applies ``ReceiptModel`` and writes the model's ``ReceiptModel/Output`` — set-based, a fixed number of statements per
/// batch.
struct ReceiptHandler: PipelineHandler {
    let stores: StoreDirectory
    let topics: Topics
    /// The consumer group, which owns the journey steps this worker schedules (its scheduler claims them).
    let groupID: String
    /// The batch's clock: what "now" is for history-is-not-a-conversation and the top sellers' 90 days.
    let clock: @Sendable () -> Date

    /// How many products a `post_purchase` recommendation lists (``ReceiptModel/recommendationLimit``).
    static let recommendationLimit = ReceiptModel.recommendationLimit
    /// The worker named in every decision it records (``ReceiptModel/worker``).
    static let worker = ReceiptModel.worker

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

    func handle(_ events: [InboundEvent<ReceiptEvent>], connection: PostgresConnection) throws -> [OutboundCommand] {
        let now = clock()
        // Load: the batch's orders recorded before it, the new orders' buyers (the shared shopper their identities
        // resolve to, the way every worker resolves shoppers), each customer's orders before the batch, and what the
        // journey and the conversation read.
        let keys = ReceiptModel.orderKeys(events.map(\.event))
        guard !keys.isEmpty else { return [] }
        var model = ReceiptModel(
            stores: stores, topics: topics, processedAt: now, recorded: try OrderStore.recorded(keys, connection: connection),
            events: events.map { ($0.event, $0.source.position) })
        let buyers = try ShopperResolver.resolve(model.orders.map { ($0.event.message.storeID, $0.event.identities) }, connection: connection)
        model.bought(by: buyers.shoppers)
        model.follow(try PurchaseHistory.load(model.customerKeys, connection: connection))
        let waiting = try Self.waitingThankYous(model.repeatBuyers, connection: connection)
        let contacts = try Contacts.given(model.addresses, connection: connection)
        // The interests a survey stated (SurveyWorker) lean the recommendations towards them.
        let preferences = try ShopperPreferences.load(model.buyers, connection: connection)
        let queries = model.candidateQueries(preferences: preferences)
        let found = try PostgresCandidateSource(connection: connection, asOf: now).candidates(for: queries.map(\.query))
        let candidates = Dictionary(zip(queries.map(\.key), found), uniquingKeysWith: { first, _ in first })

        let output = model.apply(waiting: waiting, contacts: contacts, preferences: preferences, candidates: candidates)

        try write(output, connection: connection)
        return output.commands
    }

    /// Writes what the batch changed: the orders, the next-sale model's change, the journey, the decisions.
    private func write(_ output: ReceiptModel.Output, connection: PostgresConnection) throws {
        try OrderStore.insert(output.orders.map { ($0.event, $0.order, $0.shopperID, $0.status, $0.endedAt) }, connection: connection)
        try OrderStore.end(output.ended, connection: connection)
        try output.modelChange.record(connection: connection)
        try StepStore.schedule(output.steps, group: groupID, connection: connection)
        try Self.cancel(output.endings, connection: connection)
        if !output.latestOrders.isEmpty {
            let latest = output.latestOrders
            let (stores, shoppers, causations) =
                (PostgresArray(latest.map(\.storeID)), PostgresArray(latest.map(\.shopperID)), PostgresArray(latest.map(\.causationID)))
            try StepStore.cancel(
                where:
                    "(store_id, shopper_id) IN (SELECT * FROM unnest(\(stores)::text[], \(shoppers)::bigint[])) AND causation_id <> ALL(\(causations)::text[])",
                templates: [EmailTemplate.thankYou.name], reason: "superseded_by_newer_order", connection: connection)
            try StepStore.retime(
                template: EmailTemplate.nextSale.name, shoppers: latest.map { ($0.storeID, $0.shopperID, $0.nextSaleAt) }, connection: connection)
        }
        try Self.cancel(output.endingsAfterSupersession, connection: connection)
        try ContactDecisionLog.record(output.decisions, connection: connection)
    }

    /// Ends the pending steps of the orders `endings` refunded or cancelled, each with its reason.
    private static func cancel(_ endings: [ReceiptModel.Ending], connection: PostgresConnection) throws {
        for status in OrderStatus.endings {
            let keys = endings.filter { $0.status == status }.map(\.key)
            guard !keys.isEmpty else { continue }
            try StepStore.cancel(
                where:
                    "(store_id, order_id) IN (SELECT * FROM unnest(\(PostgresArray(keys.map(\.storeID)))::text[], \(PostgresArray(keys.map(\.orderID)))::text[]))",
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
}
