import ArgumentParser
import Churn
import Foundation
import Shared

/// `rapport-bench churn`: how well churn risk ranks who does not buy again, against the RFM quintile sum and recency
/// alone. Each customer with an order up to the calibration end is scored from those orders as of that moment; the
/// truth is whether they ordered between the calibration end and the holdout end. Printed: ROC AUC of each score for
/// "did not buy in the holdout" (0.5 is chance). Pareto/NBD and BG/NBD are fitted by `scripts/churn-baselines` on the
/// same file and split (they need a numerical optimiser; docs/models.md gives both).
struct ChurnBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "churn",
        abstract: "ROC AUC of churn risk, the RFM quintile sum and recency on purchase histories (CSV: shopper, time[, amount]).")

    @Argument(
        help: "A CSV file: shopper, order time (yyyy-MM-dd… or RFC 3339)[, amount]; a shopper's lines with one time are one order; a header line is skipped.")
    var file: String?

    @Flag(help: "Instead of a file: planted histories (customers who buy at their own rate until they silently leave).")
    var planted = false

    @Option(help: "The end of the calibration period (yyyy-MM-dd): orders up to it are what the scores know.")
    var calibrationEnd: String?

    @Option(help: "The end of the holdout (yyyy-MM-dd): did the customer order after the calibration end, up to this?")
    var holdoutEnd: String?

    func validate() throws {
        guard (file != nil) != planted else { throw ValidationError("give a CSV file or --planted") }
        if file != nil, calibrationEnd == nil || holdoutEnd == nil { throw ValidationError("a file needs --calibration-end and --holdout-end") }
        for (name, value) in [("--calibration-end", calibrationEnd), ("--holdout-end", holdoutEnd)] {
            if let value, Self.day(value) == nil { throw ValidationError("\(name) must be a date, yyyy-MM-dd") }
        }
    }

    func run() throws {
        let orders: [String: [(Date, Double)]]
        let calibration: Date
        let holdout: Date
        if planted {
            orders = Self.plantedHistories()
            calibration = Self.day(calibrationEnd ?? "2024-12-31")!
            holdout = Self.day(holdoutEnd ?? "2025-06-30")!
        } else {
            orders = try Self.read(file ?? "")
            calibration = Self.day(calibrationEnd ?? "")!
            holdout = Self.day(holdoutEnd ?? "")!
        }
        let result = Self.evaluate(orders, calibrationEnd: calibration, holdoutEnd: holdout)
        print("rapport-bench churn — \(planted ? "planted histories" : file ?? "")")
        print("  calibration to \(calibration.rfc3339), holdout to \(holdout.rfc3339)")
        print(
            String(
                format: "  %d customers, %d did not buy in the holdout (%.1f %%); store's median first→second gap %.1f days",
                result.customers, result.lapsed, 100 * Double(result.lapsed) / Double(max(result.customers, 1)), result.baseline.medianSecondOrderGapDays))
        print("  ROC AUC for \"did not buy in the holdout\"")
        for (name, auc) in [("churn risk (Rapport)", result.risk), ("RFM quintile sum", result.rfm), ("recency alone", result.recency)] {
            print("    " + name.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: "%.4f", auc))
        }
        print("  bands: " + ChurnRisk.Band.allCases.map { "\($0.rawValue) \(result.bands[$0, default: 0])" }.joined(separator: ", "))
    }

    struct Result {
        var customers = 0, lapsed = 0
        var baseline = StoreBaseline(medianSecondOrderGapDays: nil, medianMeanValue: nil)
        var risk = 0.0, rfm = 0.0, recency = 0.0
        var bands: [ChurnRisk.Band: Int] = [:]
    }

    /// Scores every customer with an order up to `calibrationEnd`, as of then, and measures each score's AUC.
    static func evaluate(_ orders: [String: [(Date, Double)]], calibrationEnd: Date, holdoutEnd: Date) -> Result {
        var summaries: [(summary: OrderSummary, lapsed: Bool)] = []
        var secondGaps: [Double] = []
        for (_, placed) in orders.sorted(by: { $0.key < $1.key }) {
            let known = placed.filter { $0.0 <= calibrationEnd }.sorted { $0.0 < $1.0 }
            guard let first = known.first, let last = known.last else { continue }
            let bought = placed.contains { $0.0 > calibrationEnd && $0.0 <= holdoutEnd }
            if known.count > 1 { secondGaps.append(known[1].0.timeIntervalSince(first.0) / 86_400) }
            summaries.append(
                (
                    OrderSummary(orders: known.count, firstOrderAt: first.0, lastOrderAt: last.0, meanValue: known.map(\.1).reduce(0, +) / Double(known.count)),
                    !bought
                ))
        }
        var result = Result()
        result.customers = summaries.count
        result.lapsed = summaries.filter(\.lapsed).count
        result.baseline = StoreBaseline(medianSecondOrderGapDays: median(secondGaps), medianMeanValue: median(summaries.map(\.summary.meanValue)))
        let labels = summaries.map(\.lapsed)
        let risks = summaries.map { ChurnRisk($0.summary, baseline: result.baseline, asOf: calibrationEnd) }
        for risk in risks { result.bands[risk.band, default: 0] += 1 }
        result.risk = rocAUC(risks.map(\.risk), labels)
        let recency = summaries.map { calibrationEnd.timeIntervalSince($0.summary.lastOrderAt) }
        result.recency = rocAUC(recency, labels)
        // RFM: quintiles 1–5 of recency (recent is 5), frequency and monetary value, summed; a high sum is a good customer.
        let r = quintiles(recency.map { -$0 })
        let f = quintiles(summaries.map { Double($0.summary.orders) })
        let m = quintiles(summaries.map(\.summary.meanValue))
        result.rfm = rocAUC(summaries.indices.map { -Double(r[$0] + f[$0] + m[$0]) }, labels)
        return result
    }

    /// Each value's quintile, 1 (lowest fifth) to 5, ties broken by position (as pandas' `qcut` of `rank(method="first")`).
    static func quintiles(_ values: [Double]) -> [Int] {
        let order = values.indices.sorted { (values[$0], $0) < (values[$1], $1) }
        var result = [Int](repeating: 0, count: values.count)
        for (rank, index) in order.enumerated() { result[index] = 1 + rank * 5 / max(values.count, 1) }
        return result
    }

    /// The probability that a randomly chosen positive scores above a randomly chosen negative (ties count half):
    /// the Mann–Whitney statistic over average ranks.
    static func rocAUC(_ scores: [Double], _ positive: [Bool]) -> Double {
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var ranks = [Double](repeating: 0, count: scores.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count, scores[order[end + 1]] == scores[order[start]] { end += 1 }
            let average = Double(start + end) / 2 + 1
            for k in start...end { ranks[order[k]] = average }
            start = end + 1
        }
        let positives = Double(positive.filter { $0 }.count)
        let negatives = Double(positive.count) - positives
        guard positives > 0, negatives > 0 else { return .nan }
        let sum = zip(ranks, positive).filter(\.1).map(\.0).reduce(0, +)
        return (sum - positives * (positives + 1) / 2) / (positives * negatives)
    }

    /// Reads `shopper, time[, amount]` lines; the lines of one shopper with one time are one order (amounts summed).
    static func read(_ path: String) throws -> [String: [(Date, Double)]] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        var orders: [String: [String: Double]] = [:]
        for line in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count >= 2, !fields[0].isEmpty, day(fields[1]) != nil || Date(rfc3339: fields[1]) != nil else { continue }  // the header
            orders[fields[0], default: [:]][fields[1], default: 0] += fields.count > 2 ? Double(fields[2]) ?? 0 : 0
        }
        return orders.mapValues { byTime in byTime.map { (Date(rfc3339: $0.key) ?? day($0.key)!, $0.value) } }
    }

    static func day(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = .gmt
        formatter.dateFormat = "yyyy-MM-dd"
        return text.count >= 10 ? formatter.date(from: String(text.prefix(10))) : nil
    }

    /// 20,000 customers, first orders spread over 2024's first quarter, each buying at their own rate (a gamma
    /// mixture: most slowly, some often) until they silently leave after an exponential lifetime of their own — the
    /// process Pareto/NBD assumes. Calibration to 2024-12-31, holdout to 2025-06-30.
    static func plantedHistories() -> [String: [(Date, Double)]] {
        var generator = SplitMix(state: 2024)
        func uniform() -> Double { (Double(generator.next() >> 11) + 0.5) / Double(1 << 53) }
        func exponential(_ mean: Double) -> Double { -mean * log(uniform()) }
        // Gamma(shape k, scale θ) by Marsaglia and Tsang (k ≥ 1).
        func gamma(_ k: Double, _ theta: Double) -> Double {
            let d = k - 1.0 / 3
            let c = 1 / sqrt(9 * d)
            while true {
                let u1 = uniform()
                let u2 = uniform()
                let x = sqrt(-2 * log(u1)) * cos(2 * .pi * u2)
                let v = pow(1 + c * x, 3)
                if v > 0, log(uniform()) < 0.5 * x * x + d - d * v + d * log(v) { return d * v * theta }
            }
        }
        let start = day("2024-01-01")!
        let end = day("2025-06-30")!
        var customers: [String: [(Date, Double)]] = [:]
        for customer in 0..<20_000 {
            let ratePerDay = gamma(1.2, 1.0 / 60)  // mean: one order every ~50 days
            let lifetime = exponential(gamma(1.5, 120))  // days until they leave
            let basket = 20 + gamma(2, 15)
            var at = start.addingTimeInterval(uniform() * 90 * 86_400)
            let leaves = at.addingTimeInterval(lifetime * 86_400)
            var orders: [(Date, Double)] = []
            repeat {
                orders.append((at, basket * (0.6 + 0.8 * uniform())))
                at = at.addingTimeInterval(exponential(1 / ratePerDay) * 86_400 + 86_400)
            } while at < leaves && at < end
            customers["c\(customer)"] = orders
        }
        return customers
    }
}
