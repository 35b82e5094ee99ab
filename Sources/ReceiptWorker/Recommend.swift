import ArgumentParser
import Foundation
import Logging
import NextSale
import Shared

/// `ReceiptWorker recommend`: one shopper's next-sale recommendations as of now, as one JSON object (CONTRACT.md).
struct Recommend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print one shopper's next-sale recommendations as of now (JSON).")

    @OptionGroup var shopper: ShopperOptions

    @Option(help: "How many products.")
    var limit = 10

    func validate() throws {
        guard (1...100).contains(limit) else { throw ValidationError("--limit must be from 1 to 100") }
    }

    func run() async throws {
        let (identity, limit) = (shopper.identity, self.limit)
        let answer = try await OperatorCommand.withConnection(applicationName: "ReceiptWorker recommend") { connection in
            try Self.recommendations(for: identity, limit: limit, now: Date(), connection: connection)
        }
        switch answer {
        case .success(let json):
            print(String(decoding: json.encoded(), as: UTF8.self))
        case .failure(let problem):
            FileHandle.standardError.write(Data((problem.message + "\n").utf8))
            throw ExitCode(1)
        }
    }

    struct Problem: Error {
        var message: String
    }

    /// The answer's JSON, or why there is none (an unknown store or shopper).
    static func recommendations(for identity: ShopperIdentity, limit: Int, now: Date, connection: PostgresConnection) throws -> Result<JSONValue, Problem> {
        let store = identity.store
        guard try connection.query("SELECT 1 FROM receipt_orders WHERE store_id = \(store) LIMIT 1").count > 0 else {
            return .failure(Problem(message: "no store \(store): it has no orders"))
        }
        // The shared shopper that identity resolves to, as every worker resolves it (a guest's orders and their logged-in
        // ones are one history once an identity links them).
        guard let shopperID = try ShopperResolver.linkedShoppers([identity], connection: connection)[identity] else {
            return .failure(Problem(message: "no shopper with \(identity.kind.rawValue) \(identity.value) in store \(store)"))
        }
        let products = try NextSaleRanker.recommend(store: store, shopperID: shopperID, asOf: now, limit: limit, connection: connection)
        func named(_ kind: ShopperIdentity.Kind) -> JSONValue { kind == identity.kind ? .string(identity.value) : .null }
        return .success(
            .object([
                "store_id": .string(store),
                "shopper": .object([
                    "user_id": named(.userID), "anonymous_id": named(.anonymousID), "email": named(.email),
                ]),
                "products": .array(Receipt.products(products)),
            ]))
    }
}
