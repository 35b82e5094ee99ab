import Foundation
import Logging
import Metrics
import ServiceLifecycle

extension Pipeline {
    /// Publishes outbox rows and deletes each once delivered. Every failure is classified
    /// (``KafkaError/publishDisposition``, settled by ``OutboxPublisher/settle(_:_:)``, as the scheduler's are), and
    /// none stops the worker's loop:
    /// - retriable: sent again after a backoff, polling meanwhile (liveness holds, readiness says `not_in_backoff`);
    /// - permanent for the message: never sent again as it is — a dead letter goes again at once as a truncated copy
    ///   of half its weight, a command becomes a dead letter itself (`handler_failure`); a row that no copy of can be
    ///   published is parked (kept, with its reason) and the partition moves on;
    /// - permanent for the worker (a topic missing, authorization refused): sent again after a backoff, readiness
    ///   false with the reason, one log line a minute naming the topic and the setting; nothing skipped;
    /// - fatal: thrown (the producer must be recreated: the worker exits, the outbox keeps the rows).
    ///
    /// `first`, where given, is an attempt already made (``Publication``): its results are classified as a send's
    /// would be, and what it delivered is deleted only if it did not delete it.
    ///
    /// - Returns: `false` when shutdown began before everything was delivered: what is left stays in the outbox for
    ///   the partition's next owner, and the caller must not commit offsets to Kafka past it.
    @discardableResult
    func publish(_ rows: [Outbox.Row], after first: Publication.FirstAttempt? = nil) async throws -> Bool {
        var pending = rows
        var first = first
        var attempt = 0
        var paused = false
        var rewind: [TopicPartition: Int64] = [:]
        var blockedLoggedAt: ContinuousClock.Instant?
        defer { if attempt > 0 { Gauge(label: "rapport_publish_blocked").record(0) } }
        while !pending.isEmpty {
            let results: [Result<KafkaDeliveryReport, KafkaError>]
            var deleted = false
            if let made = first {
                (results, deleted, first) = (made.results, made.deleted, nil)
            } else {
                let sending = pending
                results = try await health.waiting(upTo: configuration.publishBound) { try await publisher.send(sending) }
            }
            let round = try await publisher.settle(pending, results)
            if !deleted { try await deleteDelivered(round.delivered, paused: &paused, rewind: &rewind) }
            pending = round.again.map(\.row)
            guard round.wait else { continue }

            attempt += 1
            metrics.retries(stage: "publish")
            if let blocked = round.blocked {
                let reason = Self.blockedReason(topic: blocked.topic, error: blocked.error, settings: configuration.topicSettings)
                health.setPublishBlocked(reason)
                Gauge(label: "rapport_publish_blocked").record(1)
                if blockedLoggedAt.map({ ContinuousClock.now - $0 >= .seconds(60) }) ?? true {
                    blockedLoggedAt = .now
                    logger.error(
                        "cannot publish: \(reason)",
                        metadata: [LogKey.kafkaTopic: "\(blocked.topic)", LogKey.error: "\(blocked.error)", LogKey.messages: "\(pending.count)"])
                }
            } else {
                health.setPublishBlocked(nil)
                health.setBackoff(true)
                logger.warning(
                    "publishing failed; retrying", metadata: [LogKey.error: "\(round.lastError.map { "\($0)" } ?? "")", LogKey.messages: "\(pending.count)"])
            }
            guard try await backOffPolling(attempt: attempt, paused: &paused, rewind: &rewind) else {
                logger.info(
                    "shutting down with outbox rows unpublished; the partitions' next owner relays them", metadata: [LogKey.messages: "\(pending.count)"])
                return false
            }
        }
        if attempt > 0 { health.setPublishBlocked(nil) }
        if paused {
            try await resume(rewinding: rewind)
        } else if attempt > 0 {
            health.setBackoff(false)
        }
        return true
    }

    /// Waits out backoff step `attempt` (from 1) while polling, the partitions paused (once, recorded in `paused`),
    /// so that the member stays in its group and the loop keeps turning; what the polls return anyway is added to
    /// `rewind`, to be read again on resuming.
    /// - Returns: `false` when shutdown began meanwhile.
    private func backOffPolling(attempt: Int, paused: inout Bool, rewind: inout [TopicPartition: Int64]) async throws -> Bool {
        if !paused {
            try consumer.pause(Array(consumer.assignment))
            paused = true
        }
        rewind.mergeMinimum(try await waitPolling(configuration.backoff.delay(attempt: attempt - 1)))
        return !Task.isShuttingDownGracefully && !Task.isCancelled
    }

    /// Deletes delivered rows, retrying while PostgreSQL is away (polling, the partitions paused): a delivered row
    /// left behind would be published again by the partition's next owner and would hold the outbox backlog up until
    /// then. On shutdown the rows stay: the next owner sends them again, byte-identical, with the same command ids.
    private func deleteDelivered(_ ids: [Int64], paused: inout Bool, rewind: inout [TopicPartition: Int64]) async throws {
        guard !ids.isEmpty else { return }
        var attempt = 0
        while true {
            do {
                try await postgres.withConnection { try Outbox.delete(ids, connection: $0) }
                return
            } catch let error as PostgresError where error.isRetriable {
                attempt += 1
                metrics.retries(stage: "outbox_delete")
                health.setBackoff(true)
                if attempt == 1 {
                    logger.warning("delivered outbox rows not deleted; retrying", metadata: [LogKey.error: "\(error)", LogKey.messages: "\(ids.count)"])
                }
                guard try await backOffPolling(attempt: attempt, paused: &paused, rewind: &rewind) else { return }
            } catch {
                // Not a passing condition: the rows stay and the next relay sends them again, with the same ids.
                logger.warning("delivered outbox rows not deleted", metadata: [LogKey.error: "\(error)"])
                return
            }
        }
    }

    /// The readiness reason and log line for a topic the worker cannot publish to: what is wrong and what to change.
    static func blockedReason(topic: String, error: KafkaError, settings: [String: String]) -> String {
        let named = settings[topic].map { " (named by \($0))" } ?? ""
        switch error.code {
        case .unknownTopicOrPartition, .unknownTopic:
            return "topic \(topic) does not exist (\(error.code.name)): create it\(named) or point the setting at an existing topic"
        case .topicAuthorizationFailed:
            return "not authorized to write to topic \(topic)\(named) (\(error.code.name)): grant the worker's principal Write on it"
        default:
            return "cannot write to topic \(topic)\(named) (\(error.code.name)): check the KAFKA_* settings (security.protocol, sasl.*, ssl.*)"
        }
    }

    /// Publishes what previous owners left in the outbox for partitions just assigned, oldest first, before any new
    /// message of theirs is processed.
    func relayArrivals() async throws {
        let arrivals = rebalance.arrivals.take()
        guard !arrivals.isEmpty else { return }
        do {
            try await relay(arrivals.filter { $0.topic == configuration.inputTopic }.map(\.partition))
        } catch {
            rebalance.arrivals.add(arrivals)
            throw error
        }
    }

    /// Publishes the outbox rows of `partitions` of the input topic, oldest first, until none is left (or shutdown
    /// begins).
    func relay(_ partitions: [Int32]) async throws {
        guard !partitions.isEmpty else { return }
        let configuration = self.configuration
        while true {
            let rows = try await postgres.withConnection {
                try Outbox.pending(group: configuration.groupID, topic: configuration.inputTopic, partitions: partitions, limit: 1000, connection: $0)
            }
            guard !rows.isEmpty else { return }
            logger.info("relaying outbox rows", metadata: [LogKey.messages: "\(rows.count)"])
            guard try await publish(rows) else { return }
        }
    }
}
