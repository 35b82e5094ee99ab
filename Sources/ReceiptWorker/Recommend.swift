import ArgumentParser
import Foundation
import Logging
import NextSale
import Shared

/// `ReceiptWorker recommend`: one shopper's next-sale recommendations as of now, as one JSON object (CONTRACT.md).
struct Recommend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print one shopper's next-sale recommendations as of now (JSON).")

    @Option(help: "The store (context.storeId).")
    var store = "default"

    @Option(help: "The shopper's email address.")
    var email: String?

    @Option(help: "The shopper's userId.")
    var userId: String?

    @Option(help: "The shopper's anonymousId.")
    var anonymousId: String?

    @Option(help: "How many products.")
    var limit = 10

    func validate() throws {
        guard [email, userId, anonymousId].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --email, --user-id, --anonymous-id")
        }
        if let email, EmailAddress(email) == nil { throw ValidationError("--email is not a valid email address") }
        guard (1...100).contains(limit) else { throw ValidationError("--limit must be from 1 to 100") }
    }

    func run() async throws {
        let shopper = Shopper(userID: userId, anonymousID: anonymousId, email: email.flatMap { EmailAddress($0)?.value })
        let (store, limit) = (self.store, self.limit)
        let answer = try await OperatorCommand.withConnection(applicationName: "ReceiptWorker recommend") { connection in
            try Self.recommendations(store: store, shopper: shopper, limit: limit, now: Date(), connection: connection)
        }
        switch answer {
        case .success(let json):
            print(String(decoding: json.encoded(), as: UTF8.self))
        case .failure(let problem):
            FileHandle.standardError.write(Data((problem.message + "\n").utf8))
            throw ExitCode(1)
        }
    }

    /// A shopper as the operator names them (exactly one of the three).
    struct Shopper: Sendable {
        var userID: String?
        var anonymousID: String?
        var email: String?
    }

    struct Problem: Error {
        var message: String
    }

    /// The answer's JSON, or why there is none (an unknown store or shopper).
    static func recommendations(store: String, shopper: Shopper, limit: Int, now: Date, connection: PostgresConnection) throws -> Result<JSONValue, Problem> {
        let (column, value) =
            if let userID = shopper.userID { ("user_id", userID) } else if let email = shopper.email { ("email", email) } else {
                ("anonymous_id", shopper.anonymousID ?? "")
            }
        guard try connection.query("SELECT 1 FROM receipt_orders WHERE store_id = \(store) LIMIT 1").count > 0 else {
            return .failure(Problem(message: "no store \(store): it has no orders"))
        }
        // The shared shopper that identity resolves to, as every worker resolves it (a guest's orders and their logged-in
        // ones are one history once an identity links them).
        let kind: ShopperIdentity.Kind = column == "user_id" ? .userID : column == "email" ? .email : .anonymousID
        let identity = ShopperIdentity(store: store, kind: kind, value: kind == .email ? EmailAddress(value)?.value ?? value : value)
        guard let shopperID = try ShopperResolver.linkedShoppers([identity], connection: connection)[identity] else {
            return .failure(Problem(message: "no shopper with \(column) \(value) in store \(store)"))
        }
        let products = try NextSaleRanker.recommend(store: store, shopperID: shopperID, asOf: now, limit: limit, connection: connection)
        return .success(
            .object([
                "store_id": .string(store),
                "shopper": .object([
                    "user_id": shopper.userID.map(JSONValue.string) ?? .null, "anonymous_id": shopper.anonymousID.map(JSONValue.string) ?? .null,
                    "email": shopper.email.map(JSONValue.string) ?? .null,
                ]),
                "products": .array(Receipt.products(products)),
            ]))
    }
}
