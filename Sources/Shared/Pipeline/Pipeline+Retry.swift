import Logging
import ServiceLifecycle

/// One batch, retried until it commits.
extension Pipeline {
    /// Why a batch has to be tried again.
    struct RetryBatch: Error {
        /// Events that failed in the handler and have attempts left.
        var failed: [MessagePosition]
    }

    /// Processes `batch` until it commits: a transient failure (PostgreSQL, Kafka) or events failing in the handler
    /// with attempts left pause the partitions and try again after a backoff, polling meanwhile; partitions revoked
    /// meanwhile are dropped from the batch. The previous batch's publication (``Publication``) is finished before
    /// anything is relayed or retried.
    func processWithRetry(_ batch: [KafkaMessage], handler: ErasedHandler) async throws {
        var batch = batch
        var attempts: [MessagePosition: Int] = [:]
        var retry = 0
        var rewind: [TopicPartition: Int64] = [:]
        // Partitions whose outbox rows are owed before the retry: a failed attempt may have committed in part (one of
        // its transactions succeeded while another failed) or after all (PostgreSQL went away during COMMIT).
        var owed = Set<Int32>()
        while true {
            do {
                if !owed.isEmpty {
                    // Publish whatever these partitions have left, oldest first; the retry then finds those events
                    // applied and emits nothing twice.
                    try await relay(owed.sorted())
                    owed = []
                }
                try await process(batch, handler: handler, attempts: attempts)
                if retry > 0 {
                    // Read on exactly after this batch, and again from anything a poll returned while paused.
                    try await resume(rewinding: batch.nextOffsets.merging(rewind) { afterBatch, _ in afterBatch })
                    logger.info("batch committed after retrying", metadata: ["retries": "\(retry)"])
                }
                return
            } catch {
                var error = error
                // The previous batch's rows go out first: the relay below and the retry come after them.
                try await finish()
                if let partial = error as? BatchTransaction.PartialCommit {
                    // Those partitions are done; only the others are tried again.
                    owed.formUnion(partial.partitions.map(\.partition))
                    batch.removeAll { partial.partitions.contains($0.topicPartition) }
                    error = partial.error
                }
                owed.formUnion(batch.map(\.topicPartition.partition))
                if let error = error as? RetryBatch {
                    for key in error.failed { attempts[key, default: 0] += 1 }
                    logger.warning("events failed in the handler; retrying the batch", metadata: ["events": "\(error.failed.count)"])
                } else if Self.isTransient(error) {
                    logger.warning("batch failed; retrying", metadata: [LogKey.error: "\(error)"])
                } else {
                    throw error
                }
            }
            retry += 1
            rewind.mergeMinimum(try await backOff("batch", attempt: retry))
            guard !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
            // Partitions revoked meanwhile belong to another member now, which resumes from their recorded offsets.
            let assigned = consumer.assignment
            batch.removeAll { !assigned.contains($0.topicPartition) }
            guard !batch.isEmpty else {
                try await resumeRetrying(rewinding: rewind)
                return
            }
        }
    }
}
