import ArgumentParser
import CLibPQ
import CRdKafka
import Foundation
import KafkaTesting
import Logging
import Shared

/// The foundation's cost: the Swift Kafka layer against a bare librdkafka loop in the same process, and pipelined
/// inserts against COPY into the same table.
struct FoundationBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "foundation",
        abstract: "Kafka produce/consume: Swift layer vs bare librdkafka. PostgreSQL: pipelined INSERT vs COPY.")

    @Option(help: "Kafka messages per measurement.")
    var messages = 200_000

    @Option(help: "Bytes per Kafka message value.")
    var messageSize = 300

    @Option(help: "Partitions of the benchmark topics (the mock keeps about 5 MiB per partition).")
    var partitions = 16

    @Option(help: "Messages per KafkaProducer.send call (each call waits for all its delivery reports).")
    var produceBatch = 10_000

    @Option(help: "KafkaProducer.send calls in flight at once in the pipelined measurement.")
    var inFlight = 4

    @Option(help: "How many times each Kafka measurement runs; the median is reported.")
    var runs = 5

    @Option(help: "PostgreSQL rows per measurement.")
    var rows = 100_000

    @Option(help: "Rows between two Syncs in pipeline mode.")
    var syncEvery = 1000

    @Flag(help: "Skip the PostgreSQL part.")
    var skipPostgres = false

    mutating func run() async throws {
        let logger = Logger.bench
        print("rapport-bench foundation — \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print(
            "Kafka: librdkafka \(String(cString: rd_kafka_version_str())) mock cluster in-process, 1 broker, \(partitions) partitions, \(messages) messages of \(messageSize) B"
        )
        print("  median of \(runs) runs, each on fresh topics; the Swift and bare measurements alternate")
        let cluster = try MockKafkaCluster(brokers: 1, logger: logger)
        let bootstrap = cluster.bootstrapServers
        let value = [UInt8](repeating: 0x61, count: messageSize)
        var sequential: [Double] = []
        var swiftProduce: [Double] = []
        var bareProduce: [Double] = []
        var swiftConsume: [Double] = []
        var bareConsume: [Double] = []
        for run in 1...max(1, runs) {
            let swiftTopic = "bench-swift-\(run)"
            let bareTopic = "bench-bare-\(run)"
            try cluster.createTopic(swiftTopic, partitions: partitions)
            try cluster.createTopic(bareTopic, partitions: partitions)
            sequential.append(try await produceSwift(bootstrap: bootstrap, topic: swiftTopic, value: value, inFlight: 1, logger: logger))
            swiftProduce.append(try await produceSwift(bootstrap: bootstrap, topic: swiftTopic, value: value, inFlight: inFlight, logger: logger))
            bareProduce.append(try produceBare(bootstrap: bootstrap, topic: bareTopic, value: value))
            swiftConsume.append(try await consumeSwift(bootstrap: bootstrap, topic: swiftTopic, logger: logger))
            bareConsume.append(try consumeBare(bootstrap: bootstrap, topic: bareTopic))
        }
        print(
            String(
                format: "  produce Swift layer, 1 send in flight   %10.0f msg/s   (each send waits for its %d reports)", Double(messages) / median(sequential),
                produceBatch))
        report(
            "produce", swift: median(swiftProduce), bare: median(bareProduce), unit: "msg/s", count: messages,
            note: "\(inFlight) sends of \(produceBatch) in flight")
        report("consume", swift: median(swiftConsume), bare: median(bareConsume), unit: "msg/s", count: messages, note: "batches of 10000")
        withExtendedLifetime(cluster) {}

        guard !skipPostgres else { return }
        let url = try Environment().string("DATABASE_URL", default: "postgresql://localhost:5432/rapport")
        print("PostgreSQL: \(rows) rows of ~300 B into a table with a primary key, one transaction each")
        var configuration = PostgresConfiguration(url: url)
        configuration.poolSize = 1
        let client = PostgresClient(configuration: configuration, logger: logger)
        defer { client.close() }
        _ = try await client.withConnection { connection in
            try connection.executeScript(
                "DROP TABLE IF EXISTS rapport_bench; CREATE TABLE rapport_bench (id bigint PRIMARY KEY, store text, payload text, amount double precision)")
        }
        let payload = String(repeating: "x", count: 260)
        let rowCount = rows
        let syncEvery = self.syncEvery
        let pipeline = try await measure {
            _ = try await client.withTransaction { connection in
                try connection.executeBatch(
                    "INSERT INTO rapport_bench (id, store, payload, amount) VALUES ($1, $2, $3, $4)",
                    (0..<rowCount).map { [$0, "store-1", payload, 1.5] }, syncEvery: syncEvery)
            }
        }
        let copy = try await measure {
            _ = try await client.withTransaction { connection in
                try connection.copy(
                    into: "rapport_bench", columns: ["id", "store", "payload", "amount"],
                    rows: (rowCount..<(2 * rowCount)).map { [$0, "store-1", payload, 1.5] })
            }
        }
        _ = try await client.withConnection { try $0.execute("DROP TABLE rapport_bench") }
        let pipelineRate = Double(rows) / pipeline
        let copyRate = Double(rows) / copy
        print(String(format: "  insert (pipeline, Sync every %d)  %10.0f rows/s", syncEvery, pipelineRate))
        print(String(format: "  COPY FROM STDIN                   %10.0f rows/s", copyRate))
        print(String(format: "  pipeline / COPY                   %10.0f %%   (goal ≥ 30 %%)", 100 * pipelineRate / copyRate))
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    private func report(_ what: String, swift: Double, bare: Double, unit: String, count: Int, note: String) {
        let swiftRate = Double(count) / swift
        let bareRate = Double(count) / bare
        print(String(format: "  %@ Swift layer                   %10.0f %@   (%@)", what, swiftRate, unit, note))
        print(String(format: "  %@ bare librdkafka               %10.0f %@", what, bareRate, unit))
        print(String(format: "  %@ Swift / bare                  %10.0f %%       (goal ≥ 80 %%)", what, 100 * swiftRate / bareRate))
    }

    // MARK: - Kafka through the Swift layer

    /// Seconds to publish `messages` through ``KafkaProducer``, `inFlight` sends at a time, after a warm-up send.
    private func produceSwift(bootstrap: String, topic: String, value: [UInt8], inFlight: Int, logger: Logger) async throws -> Double {
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = [bootstrap]
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: logger)
        _ = try await producer.send([KafkaOutboundMessage(topic: topic, key: nil, value: value)])
        let batch = produceBatch
        let total = messages
        let elapsed = try await measure {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                func sendNext() {
                    guard next < total else { return }
                    let range = next..<min(next + batch, total)
                    next = range.upperBound
                    group.addTask {
                        let results = try await producer.send(
                            range.map { KafkaOutboundMessage(topic: topic, key: Array("key-\($0 % 1000)".utf8), value: value) })
                        guard results.allSatisfy({ (try? $0.get()) != nil }) else {
                            throw KafkaError(code: .fatal, reason: "delivery failed", isRetriable: false)
                        }
                    }
                }
                for _ in 0..<max(1, inFlight) { sendNext() }
                while try await group.next() != nil { sendNext() }
            }
        }
        try await producer.close()
        return elapsed
    }

    /// Seconds to read the messages the Swift producer wrote, in batches of 10,000, from the first message on.
    private func consumeSwift(bootstrap: String, topic: String, logger: Logger) async throws -> Double {
        var kafka = KafkaConfiguration()
        kafka.bootstrapServers = [bootstrap]
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(kafka: kafka, groupID: "bench-swift"), logger: logger)
        try consumer.assign(
            Dictionary(
                uniqueKeysWithValues: (0..<Int32(partitions)).map {
                    (TopicPartition(topic: topic, partition: $0), Int64?.some(Int64(RD_KAFKA_OFFSET_BEGINNING)))
                }))
        // The clock starts with the first message, as in the bare loop: joining and the first fetch are not measured.
        _ = try await consumer.poll(maxMessages: 1, maxWait: .seconds(30))
        let start = ContinuousClock.now
        var received = 0
        while received < messages {
            received += try await consumer.poll(maxMessages: 10_000, maxWait: .seconds(1)).count
        }
        let elapsed = (ContinuousClock.now - start).seconds
        try await consumer.close()
        return elapsed * Double(messages) / Double(received)
    }

    // MARK: - Kafka through bare librdkafka

    private func bareConfiguration(_ bootstrap: String, _ extra: [String: String]) throws -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var error = [CChar](repeating: 0, count: 512)
        for (key, value) in ["bootstrap.servers": bootstrap].merging(extra, uniquingKeysWith: { $1 }) {
            guard rd_kafka_conf_set(conf, key, value, &error, error.count) == RD_KAFKA_CONF_OK else {
                throw ValidationError("\(key): \(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
            }
        }
        return conf
    }

    /// Seconds for a bare librdkafka loop (the same producer settings) to publish `messages`, after a warm-up.
    private func produceBare(bootstrap: String, topic topicName: String, value: [UInt8]) throws -> Double {
        // The same producer settings the Swift layer uses.
        let conf = try bareConfiguration(bootstrap, ["enable.idempotence": "true", "linger.ms": "5", "compression.codec": "lz4"])
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
            if message?.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR { _ = write(2, "bare delivery failed\n", 21) }
        }
        var error = [CChar](repeating: 0, count: 512)
        let producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &error, error.count)!
        defer { rd_kafka_destroy(producer) }
        let topic = rd_kafka_topic_new(producer, topicName, nil)!
        defer { rd_kafka_topic_destroy(topic) }
        var mutableValue = value
        mutableValue.withUnsafeMutableBytes { _ = rd_kafka_produce(topic, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, $0.baseAddress, $0.count, nil, 0, nil) }
        rd_kafka_flush(producer, 30_000)
        let start = ContinuousClock.now
        for index in 0..<messages {
            let key = Array("key-\(index % 1000)".utf8)
            while true {
                let result = mutableValue.withUnsafeMutableBytes { valueBytes in
                    key.withUnsafeBytes { keyBytes in
                        rd_kafka_produce(
                            topic, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, valueBytes.baseAddress, valueBytes.count,
                            keyBytes.baseAddress, keyBytes.count, nil)
                    }
                }
                if result == 0 { break }
                rd_kafka_poll(producer, 10)
            }
            rd_kafka_poll(producer, 0)
        }
        while rd_kafka_outq_len(producer) > 0 { rd_kafka_poll(producer, 1) }
        return (ContinuousClock.now - start).seconds
    }

    /// Seconds for a bare `rd_kafka_consumer_poll` loop to read what the bare producer wrote, from the first message on.
    private func consumeBare(bootstrap: String, topic: String) throws -> Double {
        try BareKafka.consume(bootstrap: bootstrap, topic: topic, partitions: partitions, count: messages)
    }

    // MARK: - Timing

    private func measure(_ body: () async throws -> Void) async throws -> Double {
        let start = ContinuousClock.now
        try await body()
        return (ContinuousClock.now - start).seconds
    }

}
