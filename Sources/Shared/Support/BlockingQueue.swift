import Dispatch

/// A serial queue on which one C handle's blocking calls run, off Swift's cooperative thread pool.
///
/// librdkafka's poll and flush and every libpq call block their thread; on a two-core machine the cooperative pool
/// has two threads, so one blocked call there would stall the whole process (probes included). Each handle gets
/// one of these: a caller awaits a whole unit of work (a batch poll, a transaction), never a single message.
public struct BlockingQueue: Sendable {
    private let queue: DispatchQueue

    /// A serial queue named `label` (shown in debuggers and thread dumps).
    public init(label: String) {
        queue = DispatchQueue(label: label)
    }

    /// Runs `body` on the queue and returns its result to the awaiting task.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Starts `body` on the queue without waiting for it (a long-lived loop, or work that reports back by itself).
    public func start(_ body: @escaping @Sendable () -> Void) {
        queue.async(execute: body)
    }
}
