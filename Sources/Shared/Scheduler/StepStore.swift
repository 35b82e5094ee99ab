import Foundation

/// The scheduled steps' table (`rapport_scheduled_steps`): scheduling, claiming, settling and cancelling.
public enum StepStore {
    /// Stores `steps` for the worker of consumer group `group`, inside the caller's transaction; a step already
    /// stored for the same causing event and template is left as it is (a retried batch schedules nothing twice).
    /// - Throws: ``PostgresError``.
    public static func schedule(_ steps: [ScheduledStep], group: String, connection: PostgresConnection) throws {
        guard !steps.isEmpty else { return }
        try connection.execute(
            """
            INSERT INTO rapport_scheduled_steps (store_id, group_id, journey, template, shopper_key, email, causation_id, order_id, data, due_at,
                                                 shopper_id)
            SELECT u.store_id, \(group), u.journey, u.template, u.shopper_key, u.email, u.causation_id, u.order_id, u.data, u.due_at, u.shopper_id
            FROM \(.unnest(steps, [
                .init("store_id", "text", \.storeID), .init("journey", "text", \.journey), .init("template", "text", \.template),
                .init("shopper_key", "text", \.shopperKey), .init("email", "text", \.email), .init("causation_id", "text", \.causationID),
                .init("order_id", "text", \.orderID), .init("data", "jsonb") { JSONValue.object($0.data) }, .init("due_at", "timestamptz", \.dueAt),
                .init("shopper_id", "bigint", \.shopperID),
            ]))
            ON CONFLICT (store_id, causation_id, template) DO NOTHING
            """)
    }

    /// How a pending step ends before it is due.
    public enum Ending: String, Sendable {
        /// An exit condition (a refund, a newer order, an order that ends a lapse).
        case cancelled
        /// Nothing left worth sending (the shopper chose no channel the step could invite to).
        case dropped
    }

    /// Ends the pending steps that `condition` selects (a condition over the table's columns), with `reason`; a
    /// `templates` list limits it to those templates.
    /// - Returns: How many were ended.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public static func cancel(
        where condition: PostgresQuery, templates: [String]? = nil, reason: String, as ending: Ending = .cancelled,
        connection: PostgresConnection
    ) throws -> Int {
        let only: PostgresQuery = templates.map { "AND template = ANY(\(PostgresArray($0))::text[])" } ?? ""
        return try connection.execute(
            """
            UPDATE rapport_scheduled_steps SET state = \(ending.rawValue), reason = \(reason), updated_at = now()
            WHERE state = 'pending' AND (\(condition)) \(only)
            """)
    }

    /// Moves each shopper's pending steps of `template` to be due at the shopper's new time.
    /// - Throws: ``PostgresError``.
    public static func retime(template: String, shoppers: [(store: String, shopperID: Int64, dueAt: Date)], connection: PostgresConnection) throws {
        guard !shoppers.isEmpty else { return }
        try connection.execute(
            """
            UPDATE rapport_scheduled_steps s SET due_at = u.due_at, updated_at = now()
            FROM \(.unnest(shoppers, [.init("store_id", "text", \.store), .init("shopper_id", "bigint", \.shopperID), .init("due_at", "timestamptz", \.dueAt)]))
            WHERE s.state = 'pending' AND s.template = \(template) AND s.store_id = u.store_id AND s.shopper_id = u.shopper_id
            """)
    }

    /// Claims up to `limit` of `group`'s steps due at `now`, oldest due first, locking them for the caller's
    /// transaction; steps another transaction holds are skipped (`FOR UPDATE SKIP LOCKED`), so replicas never claim
    /// one step together.
    static func claim(group: String, now: Date, limit: Int, connection: PostgresConnection) throws -> [ScheduledStep] {
        try connection.query(
            """
            SELECT store_id, step_id, journey, template, shopper_key, shopper_id, email, causation_id, order_id, data, due_at, attempts
            FROM rapport_scheduled_steps
            WHERE group_id = \(group) AND state = 'pending' AND due_at <= \(now)
            ORDER BY due_at LIMIT \(limit)
            FOR UPDATE SKIP LOCKED
            """
        ).map { row in
            ScheduledStep(
                storeID: try row.decode("store_id"), stepID: try row.decode("step_id"), journey: try row.decode("journey"),
                template: try row.decode("template"), shopperKey: try row.decode("shopper_key"), shopperID: try row.decode("shopper_id"),
                email: try row.decode("email"), causationID: try row.decode("causation_id"), orderID: try row.decode("order_id"),
                data: try row.decode("data", as: JSONValue?.self)?.objectValue ?? [:], dueAt: try row.decode("due_at"), attempts: try row.decode("attempts"))
        }
    }

    /// Writes each claimed step's outcome.
    static func settle(_ steps: [ScheduledStep], _ outcomes: [StepOutcome], connection: PostgresConnection) throws {
        guard !steps.isEmpty else { return }
        let rows = zip(steps, outcomes).map { step, outcome -> (ScheduledStep, StepOutcome, Date, String?) in
            var due = step.dueAt
            var command: String?
            switch outcome.kind {
            case .deferred(let until): due = until
            case .sent(let commands): command = commands.first?.id
            default: break
            }
            return (step, outcome, due, command)
        }
        try connection.execute(
            """
            UPDATE rapport_scheduled_steps s
            SET state = u.state, reason = u.reason, due_at = u.due_at, command_id = u.command_id, updated_at = now(),
                attempts = s.attempts + CASE WHEN u.state = 'pending' THEN 1 ELSE 0 END
            FROM \(.unnest(rows, [
                .init("store_id", "text", \.0.storeID), .init("step_id", "bigint", \.0.stepID), .init("state", "text", \.1.state),
                .init("reason", "text", \.1.reason), .init("due_at", "timestamptz", \.2), .init("command_id", "text", \.3),
            ]))
            WHERE s.store_id = u.store_id AND s.step_id = u.step_id
            """)
    }

    /// How many of `group`'s steps are due at `now`, and when the oldest of them was due.
    static func due(group: String, now: Date, connection: PostgresConnection) throws -> (count: Int, oldest: Date?) {
        let row = try connection.query(
            "SELECT count(*), min(due_at) FROM rapport_scheduled_steps WHERE group_id = \(group) AND state = 'pending' AND due_at <= \(now)"
        ).first
        return try row?.decode((Int, Date?).self) ?? (0, nil)
    }
}
