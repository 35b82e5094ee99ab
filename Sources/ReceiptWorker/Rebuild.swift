import ArgumentParser
import Foundation
import Logging
import NextSale
import Shared

/// `ReceiptWorker rebuild --store S`: recomputes the store's next-sale model from its orders — after a backfill
/// written straight to the tables, or a change to what the model counts. One `REPEATABLE READ` transaction: the
/// orders it reads and the pending changes it drops are the same snapshot, so a batch committing meanwhile is counted
/// once (by its change, folded later); folds wait for it.
struct Rebuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Recompute a store's next-sale model from its recorded orders.")

    @Option(help: "The store (context.storeId).")
    var store: String

    func run() async throws {
        let store = self.store
        let (customers, orders) = try await OperatorCommand.withConnection(applicationName: "ReceiptWorker rebuild", transaction: true) {
            try PurchaseModelStore.rebuild(store: store, connection: $0)
        }
        print("rebuilt the next-sale model of \(store) from \(orders) orders of \(customers) customers")
    }
}
