import Metrics

/// The pipeline's Prometheus series (through swift-metrics):
/// `rapport_events_total{topic,type,outcome}` (outcome: handled, skipped, duplicate, dead_lettered),
/// `rapport_batch_size`, `rapport_batch_duration_seconds`, `rapport_commands_total{topic,name}`,
/// `rapport_dead_letters_total{topic,reason}`, `rapport_retries_total{stage}`,
/// `rapport_kafka_consumer_lag{topic,partition}`, `rapport_publish_failures_total{topic,disposition}`; beside them
/// the publish path records `rapport_publish_blocked` (1 while a topic cannot be written to) and
/// `rapport_outbox_parked_total{topic}`.
struct PipelineMetrics: Sendable {
    let topic: String

    func batch(
        size: Int, duration: Duration, handled: [InboundEvent<any Sendable>], duplicates: Int, skipped: Int, deadLetters: [DeadLetter],
        commands: [OutboundCommand]
    ) {
        Recorder(label: "rapport_batch_size", dimensions: [("topic", topic)], aggregate: true).record(size)
        Timer(label: "rapport_batch_duration_seconds", dimensions: [("topic", topic)]).recordNanoseconds(
            duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
        for (type, count) in Dictionary(grouping: handled, by: { $0.message.kind.rawValue }).mapValues(\.count) {
            events(type: type, outcome: "handled", count)
        }
        events(type: "any", outcome: "duplicate", duplicates)
        events(type: "other", outcome: "skipped", skipped)
        events(type: "any", outcome: "dead_lettered", deadLetters.count)
        for (reason, count) in Dictionary(grouping: deadLetters, by: { $0.failure.reason.rawValue }).mapValues(\.count) {
            Counter(label: "rapport_dead_letters_total", dimensions: [("topic", topic), ("reason", reason)]).increment(by: count)
        }
        for (key, count) in Dictionary(grouping: commands, by: { "\($0.topic)\u{0}\($0.name)" }).mapValues(\.count) {
            let parts = key.split(separator: "\u{0}", maxSplits: 1).map(String.init)
            Counter(label: "rapport_commands_total", dimensions: [("topic", parts[0]), ("name", parts.count > 1 ? parts[1] : "")])
                .increment(by: count)
        }
    }

    private func events(type: String, outcome: String, _ count: Int) {
        guard count > 0 else { return }
        Counter(label: "rapport_events_total", dimensions: [("topic", topic), ("type", type), ("outcome", outcome)]).increment(by: count)
    }

    /// One message's publish failed, classified by ``KafkaError/publishDisposition``.
    func publishFailure(topic: String, disposition: KafkaError.PublishDisposition) {
        Counter(label: "rapport_publish_failures_total", dimensions: [("topic", topic), ("disposition", disposition.rawValue)]).increment()
    }

    func retries(stage: String) {
        Counter(label: "rapport_retries_total", dimensions: [("stage", stage)]).increment()
    }

    func recordLag(_ lags: [PartitionLag]) {
        for partition in lags {
            guard let lag = partition.lag else { continue }
            Gauge(
                label: "rapport_kafka_consumer_lag",
                dimensions: [("topic", partition.topicPartition.topic), ("partition", "\(partition.topicPartition.partition)")]
            )
            .record(lag)
        }
    }
}
