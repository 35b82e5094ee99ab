/// The outbox: messages to publish once their batch has committed, stored in the same transaction as the batch's
/// effects, so that an effect and its commands exist together or not at all.
public enum Outbox {
    /// One row to write: a message and the input partition whose batch produced it.
    public struct Entry: Sendable {
        /// The input partition, which decides who relays the row after a crash.
        public var source: TopicPartition
        /// The offset of the input message that caused it, where one did.
        public var sourceOffset: Int64?
        /// What to publish.
        public var message: KafkaOutboundMessage
        /// The command id, for commands (dead letters have none).
        public var commandID: String?
    }

    /// A stored row: its id, what to publish, and where it came from.
    public struct Row: Sendable {
        /// The row's id; ids grow in write order.
        public var id: Int64
        /// What to publish.
        public var message: KafkaOutboundMessage
        /// The input partition whose event caused it.
        public var source: TopicPartition
        /// The offset of that event, where known.
        public var sourceOffset: Int64?
        /// The command id, for commands; `nil` for dead letters.
        public var commandID: String?

        /// The row `id` as written from `entry`.
        init(id: Int64, entry: Entry) {
            self.init(id: id, message: entry.message, source: entry.source, sourceOffset: entry.sourceOffset, commandID: entry.commandID)
        }

        init(id: Int64, message: KafkaOutboundMessage, source: TopicPartition, sourceOffset: Int64?, commandID: String?) {
            self.id = id
            self.message = message
            self.source = source
            self.sourceOffset = sourceOffset
            self.commandID = commandID
        }
    }

    /// Writes `entries` in one statement, in order.
    /// - Returns: Their row ids, in the same order.
    /// - Throws: ``PostgresError``.
    static func write(_ entries: [Entry], group: String, connection: PostgresConnection) throws -> [Int64] {
        guard !entries.isEmpty else { return [] }
        let sourceTopics = PostgresArray(entries.map(\.source.topic))
        let sourcePartitions = PostgresArray(entries.map(\.source.partition))
        let sourceOffsets = PostgresArray(entries.map(\.sourceOffset))
        let topics = PostgresArray(entries.map(\.message.topic))
        let keys = PostgresArray(entries.map { $0.message.key.map(PostgresBytes.init) })
        let values = PostgresArray(entries.map { PostgresBytes($0.message.value) })
        let headers = PostgresArray(entries.map { PostgresBytes(HeaderCodec.encode($0.message.headers)) })
        let commandIDs = PostgresArray(entries.map(\.commandID))
        let rows = try connection.query(
            """
            INSERT INTO rapport_outbox (group_id, source_topic, source_partition, source_offset, topic, key, value, headers, command_id)
            SELECT \(group), u.source_topic, u.source_partition, u.source_offset, u.topic, u.key, u.value, u.headers, u.command_id
            FROM unnest(\(sourceTopics)::text[], \(sourcePartitions)::integer[], \(sourceOffsets)::bigint[], \(topics)::text[], \(keys)::bytea[],
                        \(values)::bytea[], \(headers)::bytea[], \(commandIDs)::text[])
                 WITH ORDINALITY AS u(source_topic, source_partition, source_offset, topic, key, value, headers, command_id, n)
            ORDER BY u.n
            RETURNING id
            """)
        return try rows.decode(Int64.self).sorted()
    }

    /// The rows left for `partitions` of `topic`, oldest first; parked rows are not among them.
    /// - Throws: ``PostgresError``.
    static func pending(group: String, topic: String, partitions: [Int32], limit: Int, connection: PostgresConnection) throws -> [Row] {
        try connection.query(
            """
            SELECT id, topic, key, value, headers, source_partition, source_offset, command_id FROM rapport_outbox
            WHERE group_id = \(group) AND source_topic = \(topic) AND source_partition = ANY(\(PostgresArray(partitions))::integer[]) AND parked_at IS NULL
            ORDER BY id LIMIT \(limit)
            """
        ).decode((Int64, String, PostgresBytes?, PostgresBytes, PostgresBytes, Int32, Int64?, String?).self).map {
            id, target, key, value, headers, partition, sourceOffset, commandID in
            Row(
                id: id,
                message: KafkaOutboundMessage(topic: target, key: key?.bytes, value: value.bytes, headers: try HeaderCodec.decode(headers.bytes)),
                source: TopicPartition(topic: topic, partition: partition), sourceOffset: sourceOffset, commandID: commandID)
        }
    }

    /// Parks a row that cannot be published in any form: it stays, with `reason`, and is no longer relayed.
    /// - Throws: ``PostgresError``.
    static func park(_ id: Int64, reason: String, connection: PostgresConnection) throws {
        try connection.execute("UPDATE rapport_outbox SET parked_at = now(), parked_reason = \(reason) WHERE id = \(id)")
    }

    /// Deletes delivered rows.
    /// - Throws: ``PostgresError``.
    static func delete(_ ids: [Int64], connection: PostgresConnection) throws {
        guard !ids.isEmpty else { return }
        try connection.execute("DELETE FROM rapport_outbox WHERE id = ANY(\(PostgresArray(ids))::bigint[])")
    }

    /// How many rows wait to be published, and how many are parked, for every group.
    static func backlog(connection: PostgresConnection) throws -> (waiting: Int, parked: Int) {
        let row = try connection.query("SELECT count(*) FILTER (WHERE parked_at IS NULL), count(*) FILTER (WHERE parked_at IS NOT NULL) FROM rapport_outbox")
            .first
        return try row?.decode((Int, Int).self) ?? (0, 0)
    }
}

/// Headers as bytes, so that a dead letter keeps its original headers exactly: per header a 2-byte name length, the
/// name, a 4-byte value length (`0xFFFFFFFF` for none) and the value; big-endian.
enum HeaderCodec {
    static func encode(_ headers: [KafkaHeader]) -> [UInt8] {
        var bytes: [UInt8] = []
        for header in headers {
            let name = Array(header.key.utf8.prefix(Int(UInt16.max)))
            bytes += [UInt8(name.count >> 8), UInt8(name.count & 0xFF)] + name
            if let value = header.value {
                let count = UInt32(value.count)
                bytes += [UInt8(count >> 24), UInt8((count >> 16) & 0xFF), UInt8((count >> 8) & 0xFF), UInt8(count & 0xFF)] + value
            } else {
                bytes += [0xFF, 0xFF, 0xFF, 0xFF]
            }
        }
        return bytes
    }

    static func decode(_ bytes: [UInt8]) throws -> [KafkaHeader] {
        var headers: [KafkaHeader] = []
        var index = 0
        func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count >= 0, index + count <= bytes.count else {
                throw PostgresError(code: .decoding, message: "outbox headers are truncated")
            }
            defer { index += count }
            return bytes[index..<(index + count)]
        }
        while index < bytes.count {
            let nameLength = try take(2).reduce(0) { $0 << 8 | Int($1) }
            let name = String(decoding: try take(nameLength), as: UTF8.self)
            let valueLength = try take(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let value = valueLength == 0xFFFF_FFFF ? nil : Array(try take(Int(valueLength)))
            headers.append(KafkaHeader(key: name, value: value))
        }
        return headers
    }
}

extension Outbox {
    /// Takes the lease of up to `limit` of `group`'s scheduled-step rows whose lease has run out, oldest first; rows
    /// another transaction is taking are skipped.
    /// - Throws: ``PostgresError``.
    static func leaseScheduled(group: String, lease: Duration, limit: Int, connection: PostgresConnection) throws -> [Row] {
        try connection.query(
            """
            UPDATE rapport_outbox o SET lease_until = now() + \("\(Int(lease.seconds)) seconds")::interval
            FROM (SELECT id FROM rapport_outbox
                  WHERE group_id = \(group) AND source_topic = '@scheduler' AND parked_at IS NULL
                    AND (lease_until IS NULL OR lease_until <= now())
                  ORDER BY id LIMIT \(limit) FOR UPDATE SKIP LOCKED) AS free
            WHERE o.id = free.id
            RETURNING o.id, o.topic, o.key, o.value, o.headers, o.command_id
            """
        ).decode((Int64, String, PostgresBytes?, PostgresBytes, PostgresBytes, String?).self).map { id, topic, key, value, headers, commandID in
            Row(
                id: id, message: KafkaOutboundMessage(topic: topic, key: key?.bytes, value: value.bytes, headers: try HeaderCodec.decode(headers.bytes)),
                source: Scheduler.source, sourceOffset: nil, commandID: commandID)
        }.sorted { $0.id < $1.id }
    }
}
