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

    /// Alive: the poll loop turned within the liveness window (a worker that has not polled yet counts as alive
    /// for one window after start).
    public func isAlive(startedAt: ContinuousClock.Instant) -> Bool {
        let last = state.withLock { $0.lastPoll } ?? startedAt
        return ContinuousClock.now - last <= livenessWindow
    }

    /// Each readiness check and whether it passes.
    public func readiness() -> [(check: String, ok: Bool)] {
        state.withLock { state in
            [
                ("postgres", state.postgresReachable),
                ("kafka_assignment", state.kafkaAssignment),
                ("not_in_backoff", !state.inBackoff),
                ("not_shutting_down", !state.shuttingDown),
            ]
        }
    }
}
