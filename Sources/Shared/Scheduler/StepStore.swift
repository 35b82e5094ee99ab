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
            SELECT u.store_id, $1, u.journey, u.template, u.shopper_key, u.email, u.causation_id, u.order_id, u.data::jsonb, u.due_at, u.shopper_id
            FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[],
                        $11::bigint[])
                 AS u(store_id, journey, template, shopper_key, email, causation_id, order_id, data, due_at, shopper_id)
            ON CONFLICT (store_id, causation_id, template) DO NOTHING
            """,
            [
                group, PostgresArray(steps.map(\.storeID)), PostgresArray(steps.map(\.journey)), PostgresArray(steps.map(\.template)),
                PostgresArray(steps.map(\.shopperKey)), PostgresArray(steps.map(\.email) as [(any PostgresBindable)?]),
                PostgresArray(steps.map(\.causationID)), PostgresArray(steps.map(\.orderID) as [(any PostgresBindable)?]),
                PostgresArray(steps.map { String(decoding: JSONValue.object($0.data).encoded(), as: UTF8.self) }), PostgresArray(steps.map(\.dueAt)),
                PostgresArray(steps.map(\.shopperID) as [(any PostgresBindable)?]),
            ])
    }

    /// How a pending step ends before it is due.
    public enum Ending: String, Sendable {
        /// An exit condition (a refund, a newer order, an order that ends a lapse).
        case cancelled
        /// Nothing left worth sending (the shopper chose no channel the step could invite to).
        case dropped
    }

    /// Ends the pending steps that `condition` selects (SQL over the table's columns, `$1` onwards bound to
    /// `parameters`), with `reason`; a `templates` list limits it to those templates. `condition` is the caller's own
    /// SQL text, a constant: every value goes in `parameters`.
    /// - Returns: How many were ended.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public static func cancel(where condition: String, _ parameters: [(any PostgresBindable)?], templates: [String]? = nil, reason: String,
                              as ending: Ending = .cancelled, connection: PostgresConnection) throws -> Int {
        let n = parameters.count
        return try connection.execute(
            """
            UPDATE rapport_scheduled_steps SET state = $\(n + 3), reason = $\(n + 1), updated_at = now()
            WHERE state = 'pending' AND (\(condition)) AND ($\(n + 2)::text[] IS NULL OR template = ANY($\(n + 2)::text[]))
            """, parameters + [reason, templates.map { PostgresArray($0) }, ending.rawValue])
    }

    /// Moves each shopper's pending steps of `template` to be due at the shopper's new time.
    /// - Throws: ``PostgresError``.
    public static func retime(template: String, shoppers: [(store: String, shopperID: Int64, dueAt: Date)], connection: PostgresConnection) throws {
        guard !shoppers.isEmpty else { return }
        try connection.execute(
            """
            UPDATE rapport_scheduled_steps s SET due_at = u.due_at, updated_at = now()
            FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS u(store_id, shopper_id, due_at)
            WHERE s.state = 'pending' AND s.template = $4 AND s.store_id = u.store_id AND s.shopper_id = u.shopper_id
            """,
            [PostgresArray(shoppers.map(\.store)), PostgresArray(shoppers.map(\.shopperID)), PostgresArray(shoppers.map(\.dueAt)), template])
    }

    /// Claims up to `limit` of `group`'s steps due at `now`, oldest due first, locking them for the caller's
    /// transaction; steps another transaction holds are skipped (`FOR UPDATE SKIP LOCKED`), so replicas never claim
    /// one step together.
    static func claim(group: String, now: Date, limit: Int, connection: PostgresConnection) throws -> [ScheduledStep] {
        try connection.query(
            """
            SELECT store_id, step_id, journey, template, shopper_key, shopper_id, email, causation_id, order_id, data::text AS data, due_at, attempts
            FROM rapport_scheduled_steps
            WHERE group_id = $1 AND state = 'pending' AND due_at <= $2
            ORDER BY due_at LIMIT $3
            FOR UPDATE SKIP LOCKED
            """, [group, now, limit]
        ).map { row in
            guard let store = try row.decode(String.self, "store_id"), let id = try row.decode(Int64.self, "step_id"),
                let journey = try row.decode(String.self, "journey"), let template = try row.decode(String.self, "template"),
                let shopper = try row.decode(String.self, "shopper_key"), let causation = try row.decode(String.self, "causation_id"),
                let due = try row.decode(Date.self, "due_at")
            else { throw PostgresError(code: .decoding, message: "a scheduled step with NULLs") }
            let data = try row.decode(String.self, "data").flatMap { try? JSONValue.parse(Array($0.utf8)[...]).objectValue } ?? [:]
            return ScheduledStep(
                storeID: store, stepID: id, journey: journey, template: template, shopperKey: shopper, shopperID: try row.decode(Int64.self, "shopper_id"),
                email: try row.decode(String.self, "email"),
                causationID: causation, orderID: try row.decode(String.self, "order_id"), data: data, dueAt: due,
                attempts: try row.decode(Int.self, "attempts") ?? 0)
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
            FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
                 AS u(store_id, step_id, state, reason, due_at, command_id)
            WHERE s.store_id = u.store_id AND s.step_id = u.step_id
            """,
            [
                PostgresArray(rows.map(\.0.storeID)), PostgresArray(rows.map(\.0.stepID)), PostgresArray(rows.map(\.1.state)),
                PostgresArray(rows.map(\.1.reason)), PostgresArray(rows.map(\.2)), PostgresArray(rows.map(\.3) as [(any PostgresBindable)?]),
            ])
    }

    /// How many of `group`'s steps are due at `now`, and when the oldest of them was due.
    static func due(group: String, now: Date, connection: PostgresConnection) throws -> (count: Int, oldest: Date?) {
        let row = try connection.query(
            "SELECT count(*), min(due_at) FROM rapport_scheduled_steps WHERE group_id = $1 AND state = 'pending' AND due_at <= $2", [group, now]
        ).first
        return (try row?.decode(Int.self, at: 0) ?? 0, try row?.decode(Date.self, at: 1))
    }
}
