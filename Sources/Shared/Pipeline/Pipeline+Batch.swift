import Logging

/// One attempt at a batch: decode and commit, finish the previous batch's publication, start this one's.
extension Pipeline {

    /// Decodes, applies and commits one batch; then finishes the publication in flight (the previous batch's rows
    /// delivered, its offsets committed to Kafka) and starts this batch's.
    func process(_ batch: [KafkaMessage], handler: ErasedHandler, attempts: [MessagePosition: Int]) async throws {
        let started = ContinuousClock.now
        let nextOffsets = batch.nextOffsets
        // Each of the batch's transactions decodes its own partitions' messages just before it begins.
        let transaction = BatchTransaction(
            events: [], deadLetters: [], undecoded: batch, nextOffsets: nextOffsets, handler: handler, attempts: attempts, configuration: configuration)
        let committed: BatchTransaction.Committed
        do {
            committed = try await transaction.commit(on: postgres)
        } catch let partial as BatchTransaction.PartialCommit {
            // What did commit is counted now; its commands go out with the relay before the retry.
            let size = batch.count { partial.partitions.contains($0.topicPartition) }
            record(partial.committed, size: size, duration: ContinuousClock.now - started)
            throw partial
        }
        let committedAt = ContinuousClock.now
        // The previous batch's rows go out before this one's: each partition's commands stay in order.
        if try await finish() {
            startPublication(committed.outbox, nextOffsets: nextOffsets)
        }  // else shutting down: this batch's rows stay in the outbox for the partitions' next owner.
        logger.debug(
            "batch done",
            metadata: [
                "batch.size": "\(batch.count)", "batch.partitions": "\(nextOffsets.count)", "batch.transactions": "\(committedAt - started)",
                "batch.previous_publication": "\(ContinuousClock.now - committedAt)",
            ])
        record(committed, size: batch.count, duration: ContinuousClock.now - started)
    }

    /// Starts publishing a committed batch's outbox rows in the background (``Publication``); the one in flight must
    /// have been finished.
    func startPublication(_ rows: [Outbox.Row], nextOffsets: [TopicPartition: Int64]) {
        rebalance.publication.set(Publication(rows: rows, nextOffsets: nextOffsets, producer: producer, postgres: postgres))
    }

    /// Finishes the publication in flight, if any: waits for its first attempt, classifies and retries what failed
    /// (``publish(_:after:)``), then commits its offsets to Kafka for the partitions still assigned.
    /// - Returns: `false` when shutdown began before every row was delivered (the rest stays in the outbox for the
    ///   partitions' next owner, and no offset is committed to Kafka past it).
    /// - Throws: ``KafkaError`` when the producer is unusable (fatal).
    @discardableResult
    func finish() async throws -> Bool {
        guard let publication = rebalance.publication.current else { return true }
        defer { rebalance.publication.clear() }
        let first = try await health.waiting(upTo: configuration.publishBound) { try await publication.firstAttempt() }
        guard try await publish(publication.rows, after: first) else { return false }
        let assigned = consumer.assignment
        do {
            // Kafka's offsets never pass a message whose outbox rows are still waiting (shutdown mid-publish).
            try await consumer.commit(publication.nextOffsets.filter { assigned.contains($0.key) })
        } catch let error as KafkaError where error.isRetriable {
            // PostgreSQL holds the offsets that count; Kafka's catch up with the next commit.
            logger.debug("offset commit refused", metadata: [LogKey.error: "\(error)"])
        }
        return true
    }

    /// Metrics and logs for what a batch (or part of one) committed.
    private func record(_ committed: BatchTransaction.Committed, size: Int, duration: Duration) {
        metrics.batch(
            size: size, duration: duration, handled: committed.handled, duplicates: committed.duplicates,
            skipped: committed.skipped, deadLetters: committed.deadLetters, commands: committed.commands)
        for deadLetter in committed.deadLetters {
            var metadata: Logger.Metadata = [
                LogKey.kafkaTopic: "\(deadLetter.source.topicPartition.topic)", LogKey.kafkaPartition: "\(deadLetter.source.topicPartition.partition)",
                LogKey.kafkaOffset: "\(deadLetter.source.offset)", "dlq.reason": "\(deadLetter.failure.reason.rawValue)",
            ]
            if let messageID = deadLetter.messageID { metadata[LogKey.messageID] = "\(messageID)" }
            logger.warning("message dead-lettered", metadata: metadata)
        }
    }

}
