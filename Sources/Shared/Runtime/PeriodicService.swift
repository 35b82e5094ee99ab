import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// Work a worker does every so often beside its pipeline: one round at a time, as ``PeriodicService`` runs it.
public protocol PeriodicJob: Sendable {
    /// The job's name in logs and metrics (`job` label): `statistics`, `deduplication_retention`, …
    var name: String { get }
    /// How long to wait after a round that finished the work there was.
    var interval: Duration { get }
    /// How failed rounds are retried: after a capped, jittered backoff.
    var backoff: Backoff { get }
    /// One round.
    /// - Returns: ``PeriodicRound/more`` when there is more to do at once (a full chunk was done).
    func round() async throws -> PeriodicRound
    /// What a run of failures means, said once at its first failure (the error is added).
    var failureMessage: String { get }
}

extension PeriodicJob {
    public var backoff: Backoff { Backoff(base: .milliseconds(200), cap: .seconds(10)) }
    public var failureMessage: String { "\(name) failed; retrying with backoff" }
}

/// What a round of a ``PeriodicJob`` left.
public enum PeriodicRound: Sendable {
    /// The work there was is done: wait the interval.
    case done
    /// There is more: run again at once.
    case more
}

/// Runs a ``PeriodicJob`` until shutdown — the one shape of every background loop a worker has (the statistics
/// keeper, de-duplication retention, the PostgreSQL health check, the next-sale model's compactor, churn re-scoring,
/// the scheduler): a round at once, then again after the job's interval (give or take a tenth, so that replicas
/// started together drift apart), at once while a round says there is more, and after a capped, jittered backoff
/// while rounds fail — logged at the first failure of a run and when it ends. Shutdown ends the wait at once; a round
/// in progress finishes.
///
/// Metrics, by `job`: `rapport_periodic_rounds_total{job,outcome}` (`done`, `more`, `failed`),
/// `rapport_periodic_round_seconds{job}`, and `rapport_periodic_last_success_timestamp_seconds{job}` — what an alert
/// reads to tell a job that stopped succeeding from one that has nothing to do.
public final class PeriodicService: Service, Sendable {
    let job: any PeriodicJob
    private let logger: Logger
    /// How far a wait may stray from the interval, as a fraction of it.
    private let jitter: Double

    public init(_ job: any PeriodicJob, jitter: Double = 0.1, logger: Logger) {
        self.job = job
        self.jitter = jitter
        self.logger = logger
    }

    public func run() async throws {
        let dimensions = [("job", job.name)]
        let duration = Timer(label: "rapport_periodic_round_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        let succeeded = Gauge(label: "rapport_periodic_last_success_timestamp_seconds", dimensions: dimensions)
        var failures = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let started = ContinuousClock.now
            let wait: Duration
            do {
                let round = try await job.round()
                duration.record(duration: ContinuousClock.now - started)
                succeeded.record(Date().timeIntervalSince1970)
                Counter(label: "rapport_periodic_rounds_total", dimensions: dimensions + [("outcome", round == .more ? "more" : "done")]).increment()
                if failures > 0 { logger.info("\(job.name) recovered", metadata: ["failures": "\(failures)"]) }
                failures = 0
                if round == .more { continue }
                wait = job.interval * (1 + Double.random(in: -jitter...jitter))
            } catch {
                Counter(label: "rapport_periodic_rounds_total", dimensions: dimensions + [("outcome", "failed")]).increment()
                failures += 1
                if failures == 1 { logger.warning("\(job.failureMessage)", metadata: [LogKey.error: "\(error)"]) }
                wait = job.backoff.delay(attempt: failures - 1)
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }
}
