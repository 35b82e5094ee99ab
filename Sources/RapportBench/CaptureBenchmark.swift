import ArgumentParser
import Foundation
import Logging
import Shared

/// CaptureWorker end to end beside the pipeline's own figure, in the same run, and how it holds up as stored state
/// grows: for each size in `--shoppers`, a fresh database is seeded with that many stored shoppers
/// (`scripts/sql/seed-shoppers.sql`: contacts, identities, ledger, decisions, interests, processed messages), and
/// CaptureWorker drains the same backlog — pop-up captures of new shoppers (`captures`), a storefront's mix of
/// browsing, captures, identifies, checkouts and feedback by returning shoppers (`storefront`), or both. EchoWorker
/// (two rows and one command per event: the pipeline's cost) drains a backlog of the same size first.
struct CaptureBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture", abstract: "CaptureWorker events/s through the whole worker by stored shoppers and mix, beside the pipeline's own events/s.")

    /// Which traffic CaptureWorker drains.
    enum Mix: String, ExpressibleByArgument, CaseIterable {
        case captures, storefront, both
    }

    @Option(help: "Events in each backlog.")
    var events = 100_000

    @Option(help: "Shoppers stored before each run, comma-separated (e.g. 10000,1000000,10000000).")
    var shoppers = "10000"

    @Option(help: "captures (new shoppers' pop-up captures), storefront (returning shoppers' mix) or both.")
    var mix: Mix = .both

    @Option(help: "Distinct returning shoppers in the storefront mix (they are among the stored ones).")
    var active = 10_000

    @OptionGroup var harnessOptions: HarnessOptions

    @Option(help: "The seed script.")
    var seedScript = "scripts/sql/seed-shoppers.sql"

    @Flag(
        help:
            "After seeding, read the seeded tables' indexes into shared buffers (pg_prewarm, as far as they hold them): a warm database rather than one just loaded."
    )
    var prewarm = false

    @Option(help: "Keep CaptureWorker's debug log (its `batch done` lines time each batch's stages) in this file; each run overwrites it.")
    var workerLog: String?

    mutating func run() async throws {
        let logger = Logger.bench
        let sizes = shoppers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 0 }) else { throw ValidationError("--shoppers takes whole numbers, comma-separated") }
        let seed = try String(contentsOfFile: seedScript, encoding: .utf8)
        let harness = try harnessOptions.harness(logger: logger)
        print("rapport-bench capture — \(ProcessInfo.processInfo.activeProcessorCount) cores, \(events) events per run, \(harnessOptions.summary)")

        /// Drains `backlog` with `executable` on a fresh database, seeded with `stored` shoppers first where asked.
        func drain(_ executable: String, stored: Int, backlog: @escaping (String) -> [KafkaOutboundMessage]) async throws -> (rate: Double, peak: Double) {
            try await harness.drain(
                executable, inputVariable: "SHOPPER_EVENTS_TOPIC", log: executable == "CaptureWorker" ? workerLog : nil,
                prepare: { database, group in
                    guard stored > 0 else { return }
                    let migrate = try BenchWorker(executable, arguments: ["migrate"], environment: ["DATABASE_URL": database.url])
                    try migrate.waitForSuccess()
                    let script = seed.replacingOccurrences(of: ":shoppers", with: String(stored))
                        .replacingOccurrences(of: ":'store'", with: PostgresConnection.quoteLiteral("bench"))
                        .replacingOccurrences(of: ":'group'", with: PostgresConnection.quoteLiteral(group))
                    let seeding = ContinuousClock.now
                    let client = database.client(logger: logger)
                    defer { client.close() }
                    try await client.withConnection { try $0.executeScript(script) }
                    print(String(format: "  (seeded %d stored shoppers in %.0f s)", stored, (ContinuousClock.now - seeding).seconds))
                    // The seed's writes flushed before the clock starts: otherwise the checkpoints that gigabytes of seeding
                    // set off run during the measured drain, writing the seed's pages beside the worker's on the same disk
                    // and cores. Needs superuser or pg_checkpoint; a database that refuses is measured as it is.
                    let flushing = ContinuousClock.now
                    do {
                        _ = try await client.withConnection { try $0.execute("CHECKPOINT") }
                        print(String(format: "  (checkpoint after seeding: %.0f s)", (ContinuousClock.now - flushing).seconds))
                    } catch {
                        print("  (no checkpoint after seeding: \(error); the seed's checkpoints may fall inside the run)")
                    }
                    if prewarm {
                        let blocks = try await client.withConnection { connection in
                            try connection.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
                            return try connection.query(
                                """
                                SELECT coalesce(sum(pg_prewarm(c.oid)), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname = current_schema() AND c.relkind = 'i'
                                """
                            ).first?.decode(Int.self) ?? 0
                        }
                        print(String(format: "  (prewarmed %.0f MB of indexes)", Double(blocks) * 8 / 1024))
                    }
                }, backlog: backlog)
        }

        let events = self.events
        let echo = try await harness.pipelineRate(events: events)
        print(String(format: "  pipeline (EchoWorker: 2 rows + 1 command)  %8.0f events/s   peak RSS %5.1f MB", echo.rate, echo.peak))
        print("  stored shoppers   mix          events/s   of pipeline   peak RSS")
        let mixes: [Mix] = mix == .both ? [.captures, .storefront] : [mix]
        var counts: [String: Int] = [:]
        for size in sizes {
            for mix in mixes {
                let active = self.active
                let result = try await drain("CaptureWorker", stored: size) { topic in
                    switch mix {
                    case .captures: return (0..<events).map { Self.newShopperCapture($0, topic: topic) }
                    case .storefront, .both:
                        let generated = Self.storefrontMix(count: events, shoppers: active, topic: topic)
                        counts = generated.counts
                        return generated.messages
                    }
                }
                let name = mix.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                print(
                    String(format: "  %15d   ", size) + name
                        + String(format: "  %8.0f   %9.0f %%   %6.1f MB", result.rate, 100 * result.rate / echo.rate, result.peak))
                fflush(nil)  // a long run's rows show as they come
            }
        }
        if !counts.isEmpty { print("  storefront mix: " + counts.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) }
        try await harness.close()
    }

    /// When the generated storefront traffic begins: ten hours before the run, so that every event is recent enough to
    /// converse (an event older than the store's `stale_after_hours` would start nothing, and cost less).
    static let trafficStart = Date().addingTimeInterval(-10 * 3600)

    /// A pop-up capture of a shopper never seen: consent with an offer code.
    /// Captured at `at` (by default 10 ms apart from ``trafficStart``).
    static func newShopperCapture(_ index: Int, at: Date? = nil, topic: String) -> KafkaOutboundMessage {
        let anonymous = "cap-anon-\(index)"
        let at = (at ?? trafficStart.addingTimeInterval(Double(index) * 0.01)).rfc3339
        let json =
            #"{"type":"track","event":"Email Captured","messageId":"cap-\#(index)","timestamp":"\#(at)","anonymousId":"\#(anonymous)","context":{"storeId":"bench","ip":"203.0.113.7","userAgent":"bench/1"},"properties":{"email":"cap-\#(index)@example.com","source":"popup","offer_code":"WELCOME10","consent":{"marketing":true,"opt_in_level":"single","text":"Yes please","text_version":"1"}}}"#
        return KafkaOutboundMessage(topic: topic, key: Array("bench/\(anonymous)".utf8), value: Array(json.utf8))
    }

    /// A storefront's day: mostly browsing, some captures (pop-up with consent and an offer), identifies, email-first
    /// checkouts, and email feedback, by `shoppers` returning shoppers — the seed script's first ones (`seed-anon-k`,
    /// `seed-k@example.com`), stored already when the run seeded at least that many.
    static func storefrontMix(count: Int, shoppers: Int, topic: String) -> (messages: [KafkaOutboundMessage], counts: [String: Int]) {
        var generator = SystemRandomNumberGenerator()
        var counts: [String: Int] = [:]
        let messages = (0..<count).map { index -> KafkaOutboundMessage in
            let shopper = Int.random(in: 1...max(shoppers, 1), using: &generator)
            let anonymous = "seed-anon-\(shopper)"
            let email = "seed-\(shopper)@example.com"
            let at = trafficStart.addingTimeInterval(Double(index) * 0.5).rfc3339
            let roll = Int.random(in: 0..<100, using: &generator)
            var body: [String: JSONValue] = [
                "type": .string("track"), "messageId": .string("m-\(index)"), "anonymousId": .string(anonymous), "timestamp": .string(at),
                "context": .object(["storeId": .string("bench"), "ip": .string("203.0.113.\(shopper % 250)"), "userAgent": .string("bench/1")]),
            ]
            let name: String
            switch roll {
            case 0..<70:
                name = "Product Viewed"
                body["properties"] = .object([
                    "product_id": .string("p-\(Int.random(in: 0..<2000, using: &generator))"), "category": .string("c-\(shopper % 40)"),
                ])
            case 70..<78:
                name = "Product Added"
                body["properties"] = .object(["product_id": .string("p-\(Int.random(in: 0..<2000, using: &generator))")])
            case 78..<86:
                name = "Email Captured"
                body["properties"] = .object([
                    "email": .string(email), "source": .string("popup"), "offer_code": .string("WELCOME10"),
                    "consent": .object([
                        "marketing": .bool(true), "opt_in_level": .string("single"), "text": .string("Yes please"), "text_version": .string("1"),
                    ]),
                ])
            case 86..<91:
                name = "identify"
                body["type"] = .string("identify")
                body["userId"] = .string("user-\(shopper)")
                body["traits"] = .object(["email": .string(email), "firstName": .string("Sam"), "lastName": .string("Doe \(shopper)")])
            case 91..<95:
                name = "Checkout Started"
                body["properties"] = .object(["email": .string(email), "products": .array([.object(["product_id": .string("p-1")])])])
            case 95..<98:
                name = "Unsubscribed"
                body["properties"] = .object(["email": .string(email)])
            default:
                name = "Email Bounced"
                body["properties"] = .object(["email": .string(email), "bounce_type": .string("soft")])
            }
            if name != "identify" { body["event"] = .string(name) }
            counts[name, default: 0] += 1
            return KafkaOutboundMessage(topic: topic, key: Array("bench/\(anonymous)".utf8), value: JSONValue.object(body).encoded())
        }
        return (messages, counts)
    }
}
