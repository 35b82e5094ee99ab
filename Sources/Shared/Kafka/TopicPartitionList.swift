import CRdKafka

/// Conversions between Swift partitions and librdkafka's `rd_kafka_topic_partition_list_t`.
enum TopicPartitionList {
    /// Builds a list the caller must free with `rd_kafka_topic_partition_list_destroy`.
    /// - Parameter offsets: Partitions, each with an offset or `nil` for librdkafka's "stored/committed" default.
    static func make(_ offsets: [(TopicPartition, Int64?)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        // librdkafka aborts the process when it cannot allocate, so neither call returns NULL.
        guard let list = rd_kafka_topic_partition_list_new(Int32(offsets.count)) else {
            preconditionFailure("rd_kafka_topic_partition_list_new returned NULL")
        }
        for (topicPartition, offset) in offsets {
            let element = rd_kafka_topic_partition_list_add(list, topicPartition.topic, topicPartition.partition)
            element?.pointee.offset = offset ?? Int64(RD_KAFKA_OFFSET_INVALID)
        }
        return list
    }

    /// The partitions in `list`, with each element's offset (negative values are librdkafka's logical offsets).
    static func elements(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> [(TopicPartition, Int64, rd_kafka_resp_err_t)] {
        guard let list, let elems = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).map { index in
            let element = elems[index]
            return (TopicPartition(topic: String(cString: element.topic), partition: element.partition), element.offset, element.err)
        }
    }

    /// The partitions in `list`, without offsets.
    static func partitions(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> [TopicPartition] {
        elements(list).map(\.0)
    }
}
