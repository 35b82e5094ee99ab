import Logging

/// One attempt at a batch: decode, commit, publish, commit offsets.
extension Pipeline {

    /// Decodes, applies and commits one batch, then publishes its outbox rows and commits its offsets.
    func process(_ batch: [KafkaMessage], handler: ErasedHandler, attempts: [MessagePosition: Int]) async throws {
        let started = ContinuousClock.now
        var events: [InboundEvent<any Sendable>] = []
        var deadLetters: [DeadLetter] = []
        var skipped: [TopicPartition] = []
        for message in batch {
            do {
                switch try SegmentMessage.decode(message.value, sizeLimit: configuration.maxMessageBytes) {
                case .event(let event):
                    do {
                        events.append(InboundEvent(message: event, event: try handler.decode(event), source: message))
                    } catch {
                        deadLetters.append(DeadLetter(source: message, failure: error, messageID: event.messageID))
                    }
                case .skipped: skipped.append(message.topicPartition)
                }
            } catch {
                deadLetters.append(DeadLetter(source: message, failure: error))
            }
        }
        let decodedAt = ContinuousClock.now
        let nextOffsets = batch.nextOffsets
        let transaction = BatchTransaction(
            events: events, deadLetters: deadLetters, nextOffsets: nextOffsets, handler: handler, attempts: attempts, configuration: configuration)
        let committed: BatchTransaction.Committed
        do {
            committed = try await transaction.commit(on: postgres)
        } catch let partial as BatchTransaction.PartialCommit {
            // What did commit is counted now; its commands go out with the relay before the retry.
            let size = batch.count { partial.partitions.contains($0.topicPartition) }
            record(partial.committed, size: size, skipped: skipped.count { partial.partitions.contains($0) }, duration: ContinuousClock.now - started)
            throw partial
        }
        let committedAt = ContinuousClock.now
        let published = try await publish(committed.outbox)
        let publishedAt = ContinuousClock.now
        do {
            // Kafka's offsets never pass a message whose outbox rows are still waiting (shutdown mid-publish).
            if published { try await consumer.commit(nextOffsets) }
        } catch let error as KafkaError where error.isRetriable {
            // PostgreSQL holds the offsets that count; Kafka's catch up with the next commit.
            logger.debug("offset commit refused", metadata: [LogKey.error: "\(error)"])
        }
        logger.debug(
            "batch done",
            metadata: [
                "batch.size": "\(batch.count)", "batch.partitions": "\(nextOffsets.count)", "batch.decode": "\(decodedAt - started)", "batch.transaction": "\(committedAt - decodedAt)",
                "batch.publish": "\(publishedAt - committedAt)", "batch.kafka_commit": "\(ContinuousClock.now - publishedAt)",
            ])
        record(committed, size: batch.count, skipped: skipped.count, duration: ContinuousClock.now - started)
    }

    /// Metrics and logs for what a batch (or part of one) committed.
    private func record(_ committed: BatchTransaction.Committed, size: Int, skipped: Int, duration: Duration) {
        metrics.batch(
            size: size, duration: duration, handled: committed.handled, duplicates: committed.duplicates,
            skipped: skipped, deadLetters: committed.deadLetters, commands: committed.commands)
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
