import ArgumentParser
import CRdKafka
import Foundation
import KafkaTesting
import Logging
import Shared

/// The pipeline end to end: an EchoWorker process (two rows and one command per event) against a mock cluster in
/// this process and a fresh PostgreSQL database, beside the limits (COPY of the same rows, a bare consume loop) and a
/// naive baseline (one transaction per event); then event-to-command latency at a fixed offered rate, and the
/// worker's peak resident memory.
struct PipelineBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline", abstract: "End-to-end events/s, limits and baseline, p50/p99 latency at a fixed rate, peak RSS.")

    @Option(help: "Events for the throughput run.")
    var events = 100_000

    @Option(help: "The worker's BATCH_TRANSACTIONS (transactions per batch, by partition).")
    var batchTransactions = 3

    @Option(help: "Write the worker's debug log (per-batch timings) to this file.")
    var workerLog: String?

    @Option(help: "Events for the naive one-transaction-per-event baseline.")
    var naiveEvents = 3000

    @OptionGroup var harnessOptions: HarnessOptions

    @OptionGroup var latency: LatencyOptions

    var partitions: Int { harnessOptions.partitions }
    var batchSize: Int { harnessOptions.batchSize }
    var rate: Int { latency.rate }
    var latencySeconds: Int { latency.seconds }
    var fetchWaitMs: Int { latency.fetchWaitMs }

    mutating func run() async throws {
        let logger = Logger.bench
        let database = try await BenchDatabase(prefix: "rapport_bench", logger: logger)
        let url = database.url

        let cluster = try MockKafkaCluster(brokers: 1, logger: logger)
        for topic in ["bench-events", "bench-commands"] { try cluster.createTopic(topic, partitions: partitions) }
        try cluster.createTopic("bench-events-dlq", partitions: 1)
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = [cluster.bootstrapServers]
        var producerKafka = kafka
        if let bytes = harnessOptions.producerBatchBytes { producerKafka.properties["batch.size"] = String(bytes) }
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: producerKafka), logger: logger)

        print(
            "rapport-bench pipeline — \(ProcessInfo.processInfo.activeProcessorCount) cores, EchoWorker (2 rows + 1 command per event), BATCH_SIZE \(batchSize), BATCH_TRANSACTIONS \(batchTransactions)"
        )
        print(
            "Kafka: mock cluster in this process, \(partitions) partitions\(harnessOptions.producerBatchBytes.map { ", backlog in record batches of \($0) bytes" } ?? ""); PostgreSQL: \(database.name), defaults (fsync on)"
        )

        // Throughput: a backlog of events, drained by the worker.
        for start in stride(from: 0, to: events, by: 10_000) {
            _ = try await producer.send((start..<min(start + 10_000, events)).map { Self.event(index: $0, sentAt: nil) })
        }
        let worker = try startWorker(bootstrap: cluster.bootstrapServers, databaseURL: url)
        defer { if worker.process.isRunning { kill(worker.process.processIdentifier, SIGKILL) } }
        let client = PostgresClient(configuration: PostgresConfiguration(url: url), logger: logger)
        defer { client.close() }
        let pipelineRate = try await worker.drainRate(total: events) { try await Self.effects(client) }
        print(String(format: "  pipeline end to end           %10.0f events/s   (%d events from the first effect to the last)", pipelineRate, events))

        // Latency: a fixed offered rate; each event's send time against its command's arrival.
        let latencies = try await measureLatency(producer: producer, kafka: kafka, logger: logger)
        print(
            String(
                format: "  latency at %d events/s      p50 %6.1f ms   p99 %6.1f ms   (%d events; fetch.wait.max.ms %d)", rate, latencies.p50, latencies.p99,
                latencies.count, fetchWaitMs))
        let peak = worker.peakResidentMegabytes
        worker.stop()
        print(String(format: "  worker peak RSS               %10.1f MB", peak))

        // Limits and baseline, on the same tables.
        let copyRate = try await measureCopy(client)
        print(
            String(
                format: "  limit: COPY of the same rows  %10.0f events/s   pipeline at %.0f %% of it (goal ≥ 50 %%)", copyRate, 100 * pipelineRate / copyRate))
        let consumeRate =
            Double(events) / (try BareKafka.consume(bootstrap: cluster.bootstrapServers, topic: "bench-events", partitions: partitions, count: events))
        print(String(format: "  limit: bare librdkafka consume %9.0f msg/s", consumeRate))
        let naiveRate = try await measureNaive(client)
        print(String(format: "  baseline: a transaction/event %9.0f events/s   pipeline is %.0f× that", naiveRate, pipelineRate / naiveRate))
        try await producer.close()
        withExtendedLifetime(cluster) {}
        client.close()
        try await database.drop()
    }

    // MARK: - The worker

    private func startWorker(bootstrap: String, databaseURL: String) throws -> BenchWorker {
        try BenchWorker(
            "EchoWorker",
            environment: [
                "DATABASE_URL": databaseURL, "KAFKA_BROKERS": bootstrap, "SHOPPER_EVENTS_TOPIC": "bench-events",
                "EMAIL_COMMANDS_TOPIC": "bench-commands", "BATCH_SIZE": "\(batchSize)", "BATCH_WAIT_MS": "20",
                "BATCH_TRANSACTIONS": "\(batchTransactions)", "HTTP_PORT": "0", "LOG_LEVEL": workerLog == nil ? "warning" : "debug",
                "KAFKA_GROUP_ID": "bench", "KAFKA_FETCH_WAIT_MAX_MS": "\(fetchWaitMs)",
            ], log: workerLog)
    }

    static func event(index: Int, sentAt: UInt64?) -> KafkaOutboundMessage {
        let shopper = "shopper-\(index % 1000)"
        let id = sentAt.map { "lat-\(index)-\($0)" } ?? "ev-\(index)"
        let json =
            #"{"type":"track","event":"Product Viewed","messageId":"\#(id)","timestamp":"2026-11-25T05:00:00Z","anonymousId":"\#(shopper)","context":{"storeId":"bench"},"properties":{"sequence":\#(index),"product_id":"p-\#(index % 500)","category":"shoes"}}"#
        return KafkaOutboundMessage(topic: "bench-events", key: Array("bench/\(shopper)".utf8), value: Array(json.utf8))
    }

    static func effects(_ client: PostgresClient) async throws -> Int {
        try await client.withConnection { connection in
            guard try connection.query("SELECT to_regclass('echo_effects') IS NOT NULL").first?.decode(Bool.self) ?? false else { return 0 }
            return try connection.query("SELECT count(*) FROM echo_effects").first?.decode(Int.self) ?? 0
        }
    }

    // MARK: - Latency

    private func measureLatency(producer: KafkaProducer, kafka: KafkaConfiguration, logger: Logger) async throws -> (p50: Double, p99: Double, count: Int) {
        var readerConfiguration = KafkaConsumerConfiguration(kafka: kafka, groupID: "bench-latency")
        readerConfiguration.fetchWait = .milliseconds(fetchWaitMs)
        let consumer = try KafkaConsumer(configuration: readerConfiguration, logger: logger)
        try consumer.assign(
            Dictionary(
                uniqueKeysWithValues: (0..<Int32(partitions)).map {
                    (TopicPartition(topic: "bench-commands", partition: $0), Int64?.some(Int64(RD_KAFKA_OFFSET_END)))
                }))
        _ = try await consumer.poll(maxMessages: 1, maxWait: .milliseconds(500))
        let total = rate * latencySeconds
        let tick = 100  // sends per second
        let perTick = max(1, rate / tick)
        let sending = Task {
            let start = ContinuousClock.now
            var sent = 0
            var tickIndex = 0
            while sent < total {
                let now = DispatchTime.now().uptimeNanoseconds
                let batch = (sent..<min(sent + perTick, total)).map { Self.event(index: events + $0, sentAt: now) }
                _ = try await producer.send(batch)
                sent += batch.count
                tickIndex += 1
                try await Task.sleep(until: start + .milliseconds(tickIndex * 1000 / tick), clock: .continuous)
            }
        }
        var latencies: [Double] = []
        let deadline = ContinuousClock.now + .seconds(latencySeconds + 60)
        while latencies.count < total, ContinuousClock.now < deadline {
            let messages = try await consumer.poll(maxMessages: 10_000, maxWait: .milliseconds(100))
            let received = DispatchTime.now().uptimeNanoseconds
            for message in messages {
                // causation_id is lat-<index>-<sent nanoseconds>
                guard let text = String(validating: message.value, as: UTF8.self), let range = text.range(of: "\"causation_id\":\"lat-") else { continue }
                let rest = text[range.upperBound...]
                guard let quote = rest.firstIndex(of: "\""), let sentAt = rest[..<quote].split(separator: "-").last.flatMap({ UInt64($0) }) else { continue }
                latencies.append(Double(received - sentAt) / 1e6)
            }
        }
        try await sending.value
        try await consumer.close()
        latencies.sort()
        guard !latencies.isEmpty else { return (.nan, .nan, 0) }
        let percentile = { (p: Double) in latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        return (percentile(0.50), percentile(0.99), latencies.count)
    }

    // MARK: - Limits and baseline

    /// COPY of the rows the handler writes per event (an effect and an audit row) into copies of its tables.
    private func measureCopy(_ client: PostgresClient) async throws -> Double {
        let rows = events
        return try await client.withTransaction { connection in
            try connection.executeScript(
                """
                CREATE TABLE copy_effects (LIKE echo_effects INCLUDING ALL);
                CREATE TABLE copy_audit (LIKE echo_audit);
                """)
            let start = ContinuousClock.now
            try connection.copy(
                into: "copy_effects", columns: ["store_id", "message_id", "shopper_key", "sequence", "source_partition", "source_offset"],
                rows: (0..<rows).map { ["bench", "ev-\($0)", "bench/shopper-\($0 % 1000)", $0, Int32($0 % 8), $0] })
            try connection.copy(
                into: "copy_audit", columns: ["store_id", "message_id", "event", "at"],
                rows: (0..<rows).map { ["bench", "ev-\($0)", "Product Viewed", Date()] })
            return Double(rows) / (ContinuousClock.now - start).seconds
        }
    }

    /// What a worker without batching does: per event, a transaction with the de-duplication row, the two rows, the
    /// outbox row and the offset.
    private func measureNaive(_ client: PostgresClient) async throws -> Double {
        let count = naiveEvents
        return try await client.withConnection { connection in
            let start = ContinuousClock.now
            for index in 0..<count {
                try connection.transaction {
                    let (messageID, shopperKey) = ("n-\(index)", "naive/s-\(index % 1000)")
                    try connection.execute(
                        "INSERT INTO rapport_processed_messages (group_id, store_id, message_id) VALUES ('naive', 'naive', \(messageID))")
                    try connection.execute(
                        """
                        INSERT INTO echo_effects (store_id, message_id, shopper_key, sequence, source_partition, source_offset)
                        VALUES ('naive', \(messageID), \(shopperKey), \(index), 0, \(index))
                        """)
                    try connection.execute(
                        "INSERT INTO echo_audit (store_id, message_id, event, at) VALUES ('naive', \(messageID), 'Product Viewed', now())")
                    try connection.execute(
                        """
                        INSERT INTO rapport_outbox (group_id, source_topic, source_partition, topic, key, value, headers)
                        VALUES ('naive', 'x', 0, 'y', NULL, \(PostgresBytes(Array(repeating: 0x61, count: 200))), '\\x')
                        """)
                    try connection.execute(
                        """
                        INSERT INTO rapport_consumer_offsets (group_id, topic, partition, next_offset) VALUES ('naive', 'x', 0, \(index + 1))
                        ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
                        """)
                }
            }
            return Double(count) / (ContinuousClock.now - start).seconds
        }
    }

    // MARK: - Helpers

}

/// The latency run's options: the offered rate and how long it lasts, and how long the consumers' fetches wait.
struct LatencyOptions: ParsableArguments {
    @Option(name: .customLong("rate"), help: "Offered events per second in the latency run.")
    var rate = 5000

    @Option(name: .customLong("latency-seconds"), help: "Seconds of the latency run.")
    var seconds = 10

    @Option(
        help: "fetch.wait.max.ms of the worker's and the latency reader's consumers (the mock broker holds an empty fetch this long even when data arrives).")
    var fetchWaitMs = 10
}
