import ArgumentParser

/// How an operator command names one shopper: `--store` and exactly one of `--email`, `--user-id`,
/// `--anonymous-id` (`explain`, `recommend`).
public struct ShopperOptions: ParsableArguments {
    @Option(help: "The store (context.storeId).")
    public var store = "default"

    @Option(help: "The shopper's email address.")
    public var email: String?

    @Option(help: "The shopper's userId.")
    public var userId: String?

    @Option(help: "The shopper's anonymousId.")
    public var anonymousId: String?

    public init() {}

    public func validate() throws {
        guard [email, userId, anonymousId].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --email, --user-id, --anonymous-id")
        }
        if let email, EmailAddress(email) == nil { throw ValidationError("--email is not a valid email address") }
    }

    /// The identity named, an address normalized as every worker records it.
    public var identity: ShopperIdentity {
        if let userId { return ShopperIdentity(store: store, kind: .userID, value: userId) }
        if let email { return ShopperIdentity(store: store, kind: .email, value: EmailAddress(email)?.value ?? email) }
        return ShopperIdentity(store: store, kind: .anonymousID, value: anonymousId ?? "")
    }
}
