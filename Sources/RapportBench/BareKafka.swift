import CRdKafka
import Shared

/// librdkafka without Rapport's layer: the baseline the benchmarks compare against.
enum BareKafka {
    /// Seconds for a bare `rd_kafka_consumer_poll` loop, assigned every partition of `topic` from the beginning, to
    /// read `count` messages after the first one (the clock starts with the first message, so joining and the first
    /// fetch are not measured).
    static func consume(bootstrap: String, topic: String, partitions: Int, count: Int) throws -> Double {
        guard let conf = rd_kafka_conf_new() else { throw BenchmarkError("rd_kafka_conf_new") }
        var error = [CChar](repeating: 0, count: 512)
        for (key, value) in ["bootstrap.servers": bootstrap, "group.id": "bench-bare", "enable.auto.commit": "false", "enable.partition.eof": "false"] {
            guard rd_kafka_conf_set(conf, key, value, &error, error.count) == RD_KAFKA_CONF_OK else { throw BenchmarkError(key) }
        }
        guard let consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &error, error.count) else { throw BenchmarkError("rd_kafka_new") }
        defer { rd_kafka_destroy(consumer) }
        rd_kafka_poll_set_consumer(consumer)
        guard let list = rd_kafka_topic_partition_list_new(Int32(partitions)) else { throw BenchmarkError("partition list") }
        for partition in 0..<Int32(partitions) {
            rd_kafka_topic_partition_list_add(list, topic, partition)?.pointee.offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
        }
        rd_kafka_assign(consumer, list)
        rd_kafka_topic_partition_list_destroy(list)
        var received = -1
        var start = ContinuousClock.now
        while received < count {
            guard let message = rd_kafka_consumer_poll(consumer, 1000) else { continue }
            if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                received += 1
                if received == 0 { start = .now }
            }
            rd_kafka_message_destroy(message)
        }
        let elapsed = ContinuousClock.now - start
        rd_kafka_consumer_close(consumer)
        return elapsed.seconds
    }
}

/// A benchmark set-up step that failed.
struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
