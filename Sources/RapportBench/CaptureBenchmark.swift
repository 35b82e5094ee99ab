import ArgumentParser
import Foundation
import Logging
import Shared

/// CaptureWorker end to end beside the pipeline's own figure, in the same run: the same backlog size drained first by
/// EchoWorker (two rows and one command per event: the pipeline's cost) and then by CaptureWorker (a storefront's mix
/// of browsing, captures, identifies, checkouts and feedback), each on its own fresh database.
struct CaptureBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture", abstract: "CaptureWorker events/s through the whole worker, beside the pipeline's own events/s.")

    @Option(help: "Events in each backlog.")
    var events = 100_000

    @Option(help: "Distinct shoppers in the capture backlog.")
    var shoppers = 10_000

    @Option(help: "Partitions of every topic.")
    var partitions = 8

    @Option(help: "The workers' BATCH_SIZE.")
    var batchSize = 2000

    mutating func run() async throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        let cluster = try MockKafkaCluster(brokers: 1, logger: logger)
        for topic in ["bench-echo", "bench-capture", "bench-email", "bench-recs"] { try cluster.createTopic(topic, partitions: partitions) }
        for topic in ["bench-echo-dlq", "bench-capture-dlq"] { try cluster.createTopic(topic, partitions: 1) }
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = [cluster.bootstrapServers]
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: logger)
        print("rapport-bench capture — \(ProcessInfo.processInfo.activeProcessorCount) cores, \(events) events per worker, BATCH_SIZE \(batchSize), \(partitions) partitions")

        func drain(_ executable: String, topic: String, backlog: [KafkaOutboundMessage], progress: String) async throws -> (rate: Double, peak: Double) {
            let database = try await BenchDatabase(prefix: "rapport_bench_\(executable.lowercased())", logger: logger)
            for start in stride(from: 0, to: backlog.count, by: 10_000) {
                for result in try await producer.send(Array(backlog[start..<min(start + 10_000, backlog.count)])) { _ = try result.get() }
            }
            let worker = try BenchWorker(
                executable,
                environment: [
                    "DATABASE_URL": database.url, "KAFKA_BROKERS": cluster.bootstrapServers, "SHOPPER_EVENTS_TOPIC": topic,
                    "EMAIL_COMMANDS_TOPIC": "bench-email", "RECOMMENDATION_COMMANDS_TOPIC": "bench-recs", "BATCH_SIZE": "\(batchSize)",
                    "BATCH_WAIT_MS": "20", "HTTP_PORT": "0", "LOG_LEVEL": "warning", "KAFKA_GROUP_ID": "bench-\(executable)",
                    "KAFKA_FETCH_WAIT_MAX_MS": "10",
                ])
            defer { worker.stop() }
            let client = database.client(logger: logger)
            defer { client.close() }
            let total = backlog.count
            let rate = try await worker.drainRate(total: total) {
                try await client.withConnection { connection in
                    guard try connection.query("SELECT to_regclass('rapport_processed_messages') IS NOT NULL").first?.decode(Bool.self, at: 0) == true
                    else { return 0 }
                    return try connection.query(progress).first?.decode(Int.self, at: 0) ?? 0
                }
            }
            let peak = worker.peakResidentMegabytes
            worker.stop()
            client.close()
            try await database.drop()
            return (rate, peak)
        }

        let echo = try await drain(
            "EchoWorker", topic: "bench-echo", backlog: (0..<events).map { Self.echoEvent($0) },
            progress: "SELECT count(*) FROM echo_effects")
        print(String(format: "  pipeline (EchoWorker: 2 rows + 1 command)  %8.0f events/s   peak RSS %5.1f MB", echo.rate, echo.peak))
        let mix = Self.captureMix(count: events, shoppers: shoppers)
        let capture = try await drain(
            "CaptureWorker", topic: "bench-capture", backlog: mix.messages, progress: "SELECT count(*) FROM rapport_processed_messages")
        print(String(format: "  CaptureWorker (storefront mix)            %8.0f events/s   peak RSS %5.1f MB", capture.rate, capture.peak))
        print(String(format: "  CaptureWorker at %.0f %% of the pipeline's own rate", 100 * capture.rate / echo.rate))
        print("  mix: " + mix.counts.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        try await producer.close()
        withExtendedLifetime(cluster) {}
    }

    static func echoEvent(_ index: Int) -> KafkaOutboundMessage {
        let shopper = "shopper-\(index % 1000)"
        let json =
            #"{"type":"track","event":"Product Viewed","messageId":"ev-\#(index)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"\#(shopper)","context":{"storeId":"bench"},"properties":{"sequence":\#(index),"product_id":"p-\#(index % 500)"}}"#
        return KafkaOutboundMessage(topic: "bench-echo", key: Array("bench/\(shopper)".utf8), value: Array(json.utf8))
    }

    /// A storefront's day, deterministic: mostly browsing, some captures (pop-up with consent and an offer),
    /// identifies, email-first checkouts, and email feedback.
    static func captureMix(count: Int, shoppers: Int) -> (messages: [KafkaOutboundMessage], counts: [String: Int]) {
        var generator = SystemRandomNumberGenerator()
        var counts: [String: Int] = [:]
        let messages = (0..<count).map { index -> KafkaOutboundMessage in
            let shopper = Int.random(in: 0..<shoppers, using: &generator)
            let anonymous = "anon-\(shopper)"
            let email = "shopper\(shopper)@example.com"
            let at = Date(timeIntervalSince1970: 1_795_586_400 + Double(index) * 0.5).rfc3339
            let roll = Int.random(in: 0..<100, using: &generator)
            var body: [String: JSONValue] = [
                "type": .string("track"), "messageId": .string("m-\(index)"), "anonymousId": .string(anonymous), "timestamp": .string(at),
                "context": .object(["storeId": .string("bench"), "ip": .string("203.0.113.\(shopper % 250)"), "userAgent": .string("bench/1")]),
            ]
            let name: String
            switch roll {
            case 0..<70:
                name = "Product Viewed"
                body["properties"] = .object(["product_id": .string("p-\(Int.random(in: 0..<2000, using: &generator))"), "category": .string("c-\(shopper % 40)")])
            case 70..<78:
                name = "Product Added"
                body["properties"] = .object(["product_id": .string("p-\(Int.random(in: 0..<2000, using: &generator))")])
            case 78..<86:
                name = "Email Captured"
                body["properties"] = .object([
                    "email": .string(email), "source": .string("popup"), "offer_code": .string("WELCOME10"),
                    "consent": .object(["marketing": .bool(true), "opt_in_level": .string("single"), "text": .string("Yes please"), "text_version": .string("1")]),
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
            return KafkaOutboundMessage(topic: "bench-capture", key: Array("bench/\(anonymous)".utf8), value: JSONValue.object(body).encoded())
        }
        return (messages, counts)
    }
}
