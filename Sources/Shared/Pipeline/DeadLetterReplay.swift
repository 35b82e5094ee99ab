import Foundation

/// Republishes chosen dead letters to the topic they came from (CONTRACT.md's `dlq replay`): the original key, value
/// and headers, the `dlq.*` headers dropped, to the partition named by `dlq.source.partition` — the one the
/// storefront's own partitioner chose, so the replayed event joins the rest of its shopper's events whatever
/// partitioner the producer used — or by key when that partition no longer exists. The worker's de-duplication by
/// `messageId` makes a replay safe to repeat: what was handled once is a duplicate the second time.
///
/// The dead-letter topic is read without a consumer group (nothing is committed) from the chosen offset up to the
/// high watermarks taken when the replay starts, so a replay ends even while new dead letters arrive.
public struct DeadLetterReplay: Sendable {
    /// Which dead letters to replay. Each criterion given must hold.
    public struct Selection: Sendable, Equatable {
        /// Dead letters at this offset of the dead-letter topic or later.
        public var fromOffset: Int64?
        /// Only this partition of the dead-letter topic.
        public var partition: Int32?
        /// Only the dead letters of these Segment `messageId`s; every one must be found, else nothing is replayed.
        public var messageIDs: Set<String> = []
        /// Only dead letters of this `dlq.reason`.
        public var reason: DecodeFailure.Reason?

        public init(fromOffset: Int64? = nil, partition: Int32? = nil, messageIDs: Set<String> = [], reason: DecodeFailure.Reason? = nil) {
            self.fromOffset = fromOffset
            self.partition = partition
            self.messageIDs = messageIDs
            self.reason = reason
        }

        func contains(_ message: KafkaMessage, messageID: String?) -> Bool {
            if let fromOffset, message.offset < fromOffset { return false }
            if let partition, message.topicPartition.partition != partition { return false }
            if !messageIDs.isEmpty, !(messageID.map(messageIDs.contains) ?? false) { return false }
            if let reason, message.workerHeader("dlq.reason") != reason.rawValue { return false }
            return true
        }
    }

    /// One chosen dead letter and what became of it.
    public struct Outcome: Sendable, Equatable {
        /// Where it sits in the dead-letter topic.
        public var deadLetter: MessagePosition
        public var messageID: String?
        public var reason: String?
        /// Where it was published (`nil` when skipped, or in a dry run).
        public var replayedTo: MessagePosition?
        /// Why it was not replayed: a truncated copy, no source topic, a later dead letter of the same `messageId`.
        public var skipped: String?
        /// Why publishing it failed.
        public var failed: String?

        /// One JSON line for the operator.
        public var json: JSONValue {
            var object: [String: JSONValue] = [
                "dlq_partition": .number(Double(deadLetter.topicPartition.partition)), "dlq_offset": .number(Double(deadLetter.offset)),
                "message_id": messageID.map(JSONValue.string) ?? .null, "reason": reason.map(JSONValue.string) ?? .null,
            ]
            if let replayedTo {
                object["topic"] = .string(replayedTo.topicPartition.topic)
                object["partition"] = .number(Double(replayedTo.topicPartition.partition))
                object["offset"] = .number(Double(replayedTo.offset))
            }
            if let skipped { object["skipped"] = .string(skipped) }
            if let failed { object["failed"] = .string(failed) }
            return .object(object)
        }
    }

    /// A replay that cannot be done as asked (nothing was published).
    public struct Refusal: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    let consumer: KafkaConsumer
    let producer: KafkaProducer
    /// The worker's own input topic: the only topic a replay publishes to, whatever a dead letter's headers say.
    let inputTopic: String

    /// A replay reading through `consumer` (assigned, never subscribed) and publishing through `producer`, to
    /// `inputTopic` only.
    public init(consumer: KafkaConsumer, producer: KafkaProducer, inputTopic: String) {
        self.consumer = consumer
        self.producer = producer
        self.inputTopic = inputTopic
    }

    /// Replays the dead letters of `topic` that `selection` chooses, oldest first; with `dryRun`, only says which.
    /// - Returns: Every chosen dead letter, replayed or skipped, in the dead-letter topic's order.
    /// - Throws: ``Refusal`` (an unknown partition, a `messageId` not found) before anything is published;
    ///   ``KafkaError`` when the cluster cannot be read, ``ReadToEndTimeout`` when it stops answering. A message that could not be
    ///   published is an outcome with ``Outcome/failed``.
    public func replay(topic: String, selection: Selection, dryRun: Bool = false, timeout: Duration = .seconds(60)) async throws -> [Outcome] {
        let chosen = try await read(topic: topic, selection: selection, timeout: timeout)
        let found = Set(chosen.compactMap(\.messageID))
        let missing = selection.messageIDs.subtracting(found).sorted()
        guard missing.isEmpty else {
            throw Refusal(
                description:
                    "no dead letter with messageId \(missing.joined(separator: ", ")) in \(topic)\(selection.reason.map { " (reason \($0.rawValue))" } ?? "")")
        }
        // A message dead-lettered again after an earlier replay is in the topic twice: its latest dead letter goes.
        var latest: [String: MessagePosition] = [:]
        for (message, messageID) in chosen.map({ ($0.message, $0.messageID) }) {
            guard let messageID, let source = message.workerHeader("dlq.source.topic") else { continue }
            latest[source + "\u{0}" + messageID] = message.position
        }
        var outcomes: [Outcome] = []
        var outbound: [(index: Int, message: KafkaOutboundMessage)] = []
        var partitionCounts: [String: Int32] = [:]
        for (message, messageID) in chosen.map({ ($0.message, $0.messageID) }) {
            var outcome = Outcome(deadLetter: message.position, messageID: messageID, reason: message.workerHeader("dlq.reason"))
            defer { outcomes.append(outcome) }
            guard message.workerHeader("dlq.truncated") != "true" else {
                outcome.skipped = "truncated: the dead letter holds only the first \(message.value.count) bytes of the original"
                continue
            }
            guard let source = message.workerHeader("dlq.source.topic"), !source.isEmpty else {
                outcome.skipped = "no dlq.source.topic header: not a dead letter of a Rapport worker"
                continue
            }
            guard source == inputTopic else {
                // A replay publishes under the worker's credentials: never to a topic other than its own input.
                outcome.skipped = "dlq.source.topic is not this worker's input topic (\(inputTopic))"
                continue
            }
            if let messageID, latest[source + "\u{0}" + messageID] != message.position {
                outcome.skipped = "dead-lettered again later: that later dead letter is replayed"
                continue
            }
            if partitionCounts[source] == nil { partitionCounts[source] = Int32(try await consumer.partitions(of: source, timeout: timeout).count) }
            let original = message.workerHeader("dlq.source.partition").flatMap(Int32.init)
            let partition = original.flatMap { (0..<(partitionCounts[source] ?? 0)).contains($0) ? $0 : nil }
            outbound.append(
                (
                    outcomes.count,
                    KafkaOutboundMessage(
                        topic: source, key: message.key.map(Array.init), value: Array(message.value),
                        headers: Self.originalHeaders(message.headers), partition: partition)
                ))
        }
        guard !dryRun, !outbound.isEmpty else { return outcomes }
        let reports = try await producer.send(outbound.map(\.message))
        for ((index, _), report) in zip(outbound, reports) {
            switch report {
            case .success(let delivered): outcomes[index].replayedTo = MessagePosition(topicPartition: delivered.topicPartition, offset: delivered.offset)
            case .failure(let error): outcomes[index].failed = "\(error)"
            }
        }
        return outcomes
    }

    /// The chosen dead letters of `topic`, read up to its high watermarks as of now, with their `messageId`s.
    private func read(topic: String, selection: Selection, timeout: Duration) async throws -> [(message: KafkaMessage, messageID: String?)] {
        var partitions = try await consumer.partitions(of: topic, timeout: timeout)
        if let wanted = selection.partition {
            guard partitions.contains(where: { $0.partition == wanted }) else {
                throw Refusal(description: "\(topic) has no partition \(wanted) (it has \(partitions.count))")
            }
            partitions = partitions.filter { $0.partition == wanted }
        }
        return try await consumer.readToEnd(partitions, from: selection.fromOffset, timeout: timeout).compactMap { message in
            let messageID = Self.messageID(of: message)
            return selection.contains(message, messageID: messageID) ? (message, messageID) : nil
        }
    }

    /// The headers the original message was published with: the worker's `dlq.*` dropped, and the ones the
    /// original carried under that prefix (renamed `original.dlq.*` when dead-lettered) given back their names.
    static func originalHeaders(_ headers: [KafkaHeader]) -> [KafkaHeader] {
        headers.compactMap { header in
            if header.key.hasPrefix(DeadLetter.prefix) { return nil }
            guard header.key.hasPrefix(DeadLetter.renamedPrefix + DeadLetter.prefix) else { return header }
            return KafkaHeader(key: String(header.key.dropFirst(DeadLetter.renamedPrefix.count)), value: header.value)
        }
    }

    /// The Segment `messageId` of a dead letter's value, when it is a JSON object with one.
    static func messageID(of message: KafkaMessage) -> String? {
        guard message.workerHeader("dlq.truncated") != "true", case .object(let object)? = try? JSONValue.parse(message.value, limits: .events) else {
            return nil
        }
        return object["messageId"]?.stringValue
    }
}
