import CRdKafka
import Logging

/// librdkafka's rebalance callback: tells the listener, then applies the change with the call the group's protocol
/// requires (incremental for cooperative-sticky, whole-assignment for eager).
let rebalance:
    @convention(c) (
        OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?
    ) -> Void = { client, reason, list, _ in
        guard let client, let list, let context = KafkaConsumer.Context.of(client) else { return }
        let cooperative = String(cString: rd_kafka_rebalance_protocol(client)) == "COOPERATIVE"
        let partitions = TopicPartitionList.partitions(list)
        let logger = context.logger
        switch reason {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            logger.info("partitions assigned", metadata: [LogKey.kafkaPartitions: "\(partitions.sorted())"])
            let starts = context.listener?.partitionsAssigned(partitions) ?? [:]
            if !starts.isEmpty, let elems = list.pointee.elems {
                for index in 0..<Int(list.pointee.cnt) {
                    let element = elems + index
                    let topicPartition = TopicPartition(topic: String(cString: element.pointee.topic), partition: element.pointee.partition)
                    if let offset = starts[topicPartition] { element.pointee.offset = offset }
                }
            }
            context.assignment.withLock { $0.formUnion(partitions) }
            if cooperative {
                if let error = rd_kafka_incremental_assign(client, list) {
                    logger.error("incremental assign failed", metadata: [LogKey.error: "\(KafkaError(consuming: error, "assign"))"])
                }
            } else {
                let err = rd_kafka_assign(client, list)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    logger.error("assign failed", metadata: [LogKey.error: "\(KafkaError(err, "assign"))"])
                }
            }
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(client) != 0
            logger.info(
                lost ? "partitions lost" : "partitions revoked", metadata: [LogKey.kafkaPartitions: "\(partitions.sorted())"])
            if lost {
                context.listener?.partitionsLost(partitions)
            } else {
                context.listener?.partitionsRevoked(partitions)
            }
            context.revokedDuringPoll.formUnion(partitions)
            context.assignment.withLock { $0.subtract(partitions) }
            if cooperative {
                if let error = rd_kafka_incremental_unassign(client, list) {
                    logger.error("incremental unassign failed", metadata: [LogKey.error: "\(KafkaError(consuming: error, "unassign"))"])
                }
            } else {
                _ = rd_kafka_assign(client, nil)
            }
        default:
            logger.error("rebalance failed", metadata: [LogKey.error: "\(KafkaError(reason, "rebalance"))"])
            context.revokedDuringPoll.formUnion(partitions)
            context.assignment.withLock { $0.removeAll() }
            _ = rd_kafka_assign(client, nil)
        }
    }
