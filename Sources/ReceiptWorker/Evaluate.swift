import ArgumentParser
import Foundation
import Logging
import NextSale
import Shared

/// `ReceiptWorker evaluate --store S [--holdout-orders N]`: backtests the next-sale model on the store's own history
/// (``NextSaleEvaluation/backtest(store:holdoutOrders:limit:connection:)``: each customer's last N orders held out one
/// at a time, ranked through `recommend`'s code in temporary tables the workers never see), prints hit rate@10 and
/// recall@10 of the model and of both popularity baselines with 95 % intervals, and records what the store is served
/// from now on (``StoreModelChoice``): the model only when it beats both baselines' hit rate, else its top sellers.
struct Evaluate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Backtest the next-sale model on a store's history against its top sellers, and serve whichever wins.")

    @Option(help: "The store (context.storeId).")
    var store: String

    @Option(help: "How many of each customer's last orders are held out, one at a time (1–20).")
    var holdoutOrders = 5

    @Flag(help: "Print the backtest without recording a decision.")
    var dryRun = false

    func validate() throws {
        guard (1...20).contains(holdoutOrders) else { throw ValidationError("--holdout-orders must be from 1 to 20") }
        guard !store.isEmpty, store.utf8.count <= 200, !store.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationError("--store must be 1 to 200 bytes without control characters")
        }
    }

    func run() async throws {
        let (store, holdout, dryRun) = (self.store, holdoutOrders, self.dryRun)
        let started = ContinuousClock.now
        let outcome = try await OperatorCommand.withConnection(applicationName: "ReceiptWorker evaluate") {
            connection -> (NextSaleBacktest, StoreModelChoice.Decision?)? in
            guard try connection.query("SELECT 1 FROM receipt_orders WHERE store_id = \(store) LIMIT 1").count > 0 else { return nil }
            let before = try StoreModelChoice.decision(store: store, connection: connection)
            let backtest = try NextSaleEvaluation.backtest(store: store, holdoutOrders: holdout, limit: 10, connection: connection)
            if !dryRun, backtest.decides { try StoreModelChoice.record(store: store, backtest: backtest, at: Date(), connection: connection) }
            return (backtest, before)
        }
        guard let (backtest, before) = outcome else {
            FileHandle.standardError.write(Data("no store \(store): it has no orders\n".utf8))
            throw ExitCode(1)
        }
        print("ReceiptWorker evaluate — store \(store), \(String(format: "%.0f s", (ContinuousClock.now - started).seconds))")
        for line in backtest.report { print(line) }
        let was = before.map { "until now \($0.serves.rawValue), decided \($0.decidedAt.rfc3339)" } ?? "until now the model (never evaluated)"
        guard backtest.decides else {
            print("  fewer than \(NextSaleBacktest.minimumTested) held-out orders with a product new to the customer: nothing decided; \(was)")
            return
        }
        let serves =
            backtest.serves == StoreModelChoice.Serves.model
            ? "the model (it beats both baselines' hit rate)" : "its top sellers, popular_in_store (the model does not beat them)"
        print("  \(dryRun ? "would serve" : "serves") \(serves); \(was)")
    }
}
