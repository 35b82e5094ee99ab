import Synchronization

/// What the probes report, kept up to date by the worker's loops and read by the probe server without waiting on
/// anything.
public final class WorkerHealth: Sendable {
    private struct State {
        var lastPoll: ContinuousClock.Instant?
        var postgresReachable = false
        var kafkaAssignment = false
        var inBackoff = false
        var shuttingDown = false
        /// While the loop waits inside a call that has its own time bound: when that wait counts as hung.
        var boundedWaitHungAt: ContinuousClock.Instant?
        /// Why nothing can be published, while the worker's setup does not fit the cluster.
        var publishBlocked: String?
    }

    private let state = Mutex(State())
    /// `/healthz` fails when the poll loop has not turned for this long.
    public let livenessWindow: Duration

    /// Health for a worker whose loop must turn at least every `livenessWindow`.
    public init(livenessWindow: Duration) {
        self.livenessWindow = livenessWindow
    }

    /// The poll loop has turned.
    public func pollLoopTurned(assignmentHeld: Bool) {
        state.withLock {
            $0.lastPoll = .now
            $0.kafkaAssignment = assignmentHeld
        }
    }

    /// The latest PostgreSQL check.
    public func postgresChecked(reachable: Bool) {
        state.withLock { $0.postgresReachable = reachable }
    }

    /// The worker entered or left failure backoff.
    public func setBackoff(_ inBackoff: Bool) {
        state.withLock { $0.inBackoff = inBackoff }
    }

    /// The worker is draining: no longer ready for traffic.
    public func shuttingDown() {
        state.withLock { $0.shuttingDown = true }
    }

    /// Nothing can be published for `reason` (a topic missing, authorization refused), or again can (`nil`).
    public func setPublishBlocked(_ reason: String?) {
        state.withLock { $0.publishBlocked = reason }
    }

    /// Runs `body`, a call to a dependency that ends by itself within `bound` (a producer's delivery timeout),
    /// counting the loop as alive meanwhile: waiting on a dependency is not a hang. Only a call that overruns its own
    /// bound by more than the liveness window fails liveness.
    public func waiting<T>(upTo bound: Duration, _ body: () async throws -> T) async rethrows -> T {
        let hungAt = ContinuousClock.now + bound + livenessWindow
        state.withLock { $0.boundedWaitHungAt = hungAt }
        defer { state.withLock { $0.boundedWaitHungAt = nil } }
        return try await body()
    }

    /// Alive: the poll loop turned within the liveness window, or is inside a bounded wait that has not overrun
    /// (a worker that has not polled yet counts as alive for one window after start). A worker waiting on PostgreSQL
    /// or Kafka is alive, and says so through readiness.
    public func isAlive(startedAt: ContinuousClock.Instant) -> Bool {
        let (last, hungAt) = state.withLock { ($0.lastPoll ?? startedAt, $0.boundedWaitHungAt) }
        let now = ContinuousClock.now
        if let hungAt, now < hungAt { return true }
        return now - last <= livenessWindow
    }

    /// Each readiness check, whether it passes, and why not where a reason is known.
    public func readiness() -> [(check: String, ok: Bool, reason: String?)] {
        state.withLock { state in
            [
                ("postgres", state.postgresReachable, nil),
                ("kafka_assignment", state.kafkaAssignment, nil),
                ("not_in_backoff", !state.inBackoff, nil),
                ("publishing", state.publishBlocked == nil, state.publishBlocked),
                ("not_shutting_down", !state.shuttingDown, nil),
            ]
        }
    }
}
