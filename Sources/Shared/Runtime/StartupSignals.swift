import Dispatch
import Foundation
import Synchronization

/// SIGTERM and SIGINT while a worker starts (waiting for PostgreSQL, applying migrations), before its service group
/// handles signals: the start-up task is cancelled so that the process exits 0 instead of dying by the default action
/// (status 143). The service group installs its own handlers once it runs; ``stop()`` hands over to it.
final class StartupSignals: Sendable {
    private final class Fired: Sendable {
        let value = Mutex(false)
    }

    private let sources: Mutex<[any DispatchSourceSignal]>
    private let state = Fired()

    /// Watches SIGTERM and SIGINT, calling `onSignal` once, on the first one.
    init(onSignal: @escaping @Sendable () -> Void) {
        let queue = DispatchQueue(label: "rapport.startup-signals")
        let state = self.state
        sources = Mutex(
            [SIGTERM, SIGINT].map { number in
                // The default action would end the process before the handler runs.
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler {
                    let first = state.value.withLock { fired in
                        defer { fired = true }
                        return !fired
                    }
                    if first { onSignal() }
                }
                source.resume()
                return source
            })
    }

    /// Whether a signal arrived.
    var fired: Bool { state.value.withLock { $0 } }

    /// Stops watching (the service group takes over).
    func stop() {
        sources.withLock { sources in
            for source in sources { source.cancel() }
            sources.removeAll()
        }
    }
}
