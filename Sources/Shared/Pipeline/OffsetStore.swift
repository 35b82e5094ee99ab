import Foundation

/// Where partitions resume: the offsets each batch's transaction records in PostgreSQL (`rapport_consumer_offsets`),
/// read at assignment (``PartitionRebalanceListener``) and by each batch's fence (``BatchTransaction``).
enum OffsetStore {
    /// Where each of `partitions` (of one topic) resumes, as recorded; `locking`: their rows locked until the
    /// transaction ends, so that a batch of the same partitions in another transaction — a member that lost them and
    /// does not know it yet — waits, then sees what this one recorded.
    static func read(groupID: String, partitions: [TopicPartition], locking: Bool = false, connection: PostgresConnection) throws -> [TopicPartition: Int64] {
        guard let topic = partitions.first?.topic else { return [:] }
        var offsets: [TopicPartition: Int64] = [:]
        let numbers = PostgresArray(partitions.filter { $0.topic == topic }.map(\.partition))
        for (partition, offset) in try connection.query(
            """
            SELECT partition, next_offset FROM rapport_consumer_offsets
            WHERE group_id = \(groupID) AND topic = \(topic) AND partition = ANY(\(numbers)::integer[]) \(sql: locking ? "ORDER BY partition FOR UPDATE" : "")
            """
        ).decode((Int32, Int64).self) {
            offsets[TopicPartition(topic: topic, partition: partition)] = offset
        }
        return offsets
    }

    /// Records where each partition of a batch resumes, inside the batch's transaction.
    static func record(_ offsets: [TopicPartition: Int64], groupID: String, connection: PostgresConnection) throws {
        guard !offsets.isEmpty else { return }
        let entries = offsets.sorted { $0.key < $1.key }
        // The group once, as a scalar: a column of it would repeat it per partition.
        try connection.execute(
            """
            INSERT INTO rapport_consumer_offsets AS t (group_id, topic, partition, next_offset)
            SELECT \(groupID), u.topic, u.partition, u.next_offset
            FROM \(.unnest(entries, [.init("topic", "text", \.key.topic), .init("partition", "integer", \.key.partition), .init("next_offset", "bigint", \.value)]))
            ON CONFLICT (group_id, topic, partition) DO UPDATE
            SET next_offset = greatest(t.next_offset, EXCLUDED.next_offset), updated_at = now()
            """)
    }
}
