extension KafkaConsumer {
    /// Reads `partitions` without a group (assigned, nothing committed) from `offset` — or each partition's beginning —
    /// up to the high watermarks taken when the call starts, so that it ends however fast others produce.
    /// - Returns: The messages below those watermarks, in partition order.
    /// - Throws: ``KafkaError``; ``ReadToEndTimeout`` when no message arrives for `timeout` before the end.
    public func readToEnd(_ partitions: [TopicPartition], from offset: Int64? = nil, timeout: Duration = .seconds(60)) async throws -> [KafkaMessage] {
        let watermarks = try await highWatermarks(for: partitions, timeout: timeout)
        let start = offset.map { max($0, 0) } ?? 0
        let toRead = partitions.filter { (watermarks[$0] ?? 0) > start }
        guard !toRead.isEmpty else { return [] }
        // -2 is librdkafka's OFFSET_BEGINNING: retention may have removed offset 0.
        try assign(Dictionary(uniqueKeysWithValues: toRead.map { ($0, Int64?.some(offset.map { max($0, 0) } ?? -2)) }))
        var next: [TopicPartition: Int64] = [:]
        var messages: [KafkaMessage] = []
        var lastProgress = ContinuousClock.now
        while toRead.contains(where: { (next[$0] ?? start) < (watermarks[$0] ?? 0) }) {
            let polled = try await poll(maxMessages: 1000, maxWait: .milliseconds(200))
            guard !polled.isEmpty else {
                guard ContinuousClock.now - lastProgress < timeout else {
                    throw ReadToEndTimeout(description: "not read to the high watermarks \(watermarks) within \(timeout): at \(next)")
                }
                continue
            }
            lastProgress = .now
            for message in polled {
                next[message.topicPartition] = message.offset + 1
                if message.offset < watermarks[message.topicPartition] ?? 0 { messages.append(message) }
            }
        }
        return messages.sorted { ($0.topicPartition, $0.offset) < ($1.topicPartition, $1.offset) }
    }
}

/// ``KafkaConsumer/readToEnd(_:from:timeout:)`` stopped receiving before the high watermarks.
public struct ReadToEndTimeout: Error, Sendable, CustomStringConvertible {
    public let description: String
}
