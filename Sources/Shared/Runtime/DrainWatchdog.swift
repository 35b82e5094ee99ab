import Foundation
import Logging
import ServiceLifecycle

/// Ends a process whose drain overran: the last service of a worker's group, so the first to hear of graceful
/// shutdown. The group drains for up to the drain timeout and then cancels; whatever has still not returned a moment
/// after that never will (a call blocked in C, which cancellation cannot reach), and the process exits with status 1
/// instead of waiting for Kubernetes' SIGKILL. Nothing is lost: the batch in hand did not commit, and the partitions'
/// next owner resumes from PostgreSQL's offsets.
final class DrainWatchdog: Service, Sendable {
    private let drainTimeout: Duration
    private let logger: Logger

    /// A watchdog for a group that drains within `drainTimeout`.
    init(drainTimeout: Duration, logger: Logger) {
        self.drainTimeout = drainTimeout
        self.logger = logger
    }

    func run() async throws {
        try? await gracefulShutdown()
        guard !Task.isCancelled else { return }
        let seconds = drainTimeout.components.seconds
        let logger = self.logger
        Thread.detachNewThread {
            // The group's own cancellation gets two seconds past the drain timeout.
            Thread.sleep(forTimeInterval: Double(seconds) + 2)
            logger.critical("drain did not finish within DRAIN_TIMEOUT_SECONDS; exiting", metadata: ["drain_timeout_seconds": "\(seconds)"])
            exit(1)
        }
    }
}
