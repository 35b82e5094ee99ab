/// Capped exponential backoff with full jitter: attempt n waits a random time in [0, min(cap, base·2ⁿ)].
public struct Backoff: Sendable {
    /// The first ceiling. Default: 100 ms.
    public var base: Duration = .milliseconds(100)
    /// The largest ceiling. Default: 10 s.
    public var cap: Duration = .seconds(10)

    /// A backoff with the given base and cap.
    public init(base: Duration = .milliseconds(100), cap: Duration = .seconds(10)) {
        self.base = base
        self.cap = cap
    }

    /// How long to wait before attempt `attempt` (0-based) is repeated.
    public func delay(attempt: Int) -> Duration {
        let ceiling = min(cap, base * (1 << min(attempt, 30)))
        let milliseconds = max(1, ceiling.milliseconds)
        return .milliseconds(Int64.random(in: 0...milliseconds))
    }
}
