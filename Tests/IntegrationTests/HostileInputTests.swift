import Foundation
import Shared
import Testing

/// Every input is untrusted: the hostile corpus (``HostileCorpus``) sent to each running worker process, each message
/// followed by a good event on the same key. The process never exits, `/healthz` stays 200, the lag returns to 0,
/// every good event's effect happens exactly once, every hostile message is in the dead-letter topic with its reason,
/// and the peak resident memory stays under the Kubernetes manifests' limit.
@Suite(.serialized) struct HostileInputTests {
    /// The manifests' memory limits (deploy/kubernetes/base/*-worker.yaml).
    static let memoryLimit: [HostileCorpus.Worker: Int] = [.capture: 256 << 20, .receipt: 384 << 20, .survey: 512 << 20]

    /// The peak resident set of process `pid` (`VmHWM`), in bytes.
    static func peakResidentBytes(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
    }

    @Test(arguments: HostileCorpus.Worker.allCases)
    func theHostileCorpusIsDeadLetteredAndEveryGoodEventStillHappensOnce(worker: HostileCorpus.Worker) async throws {
        let prefix = ["CaptureWorker": "it-cap", "ReceiptWorker": "it-rcpt", "SurveyWorker": "it-srv"][worker.rawValue] ?? ""
        try await TestEnvironment.withPipeline(12, executable: worker.rawValue, prefix: prefix) { fixture in
            // No quiet hours or pressure caps: whatever the hour of the run, a good event's email goes at once.
            fixture.extraEnvironment = [
                "STORE_SETTINGS_FILE": try CaptureWorkerTests.settingsFile(fixture, #"{"quiet_hours": null, "pressure": []}"#),
                // Batches of the size production runs, so that one batch holds many hostile messages at once.
                "BATCH_SIZE": "500",
            ]
            let (process, port) = try await fixture.startWorker()
            try await eventually("ready", timeout: .seconds(30)) { await probe(port, "/readyz")?.status == 200 }
            let liveness = PoisonMessageTests.watchLiveness(port)

            let corpus = HostileCorpus(worker: worker, store: fixture.store, now: Date())
            let cases = corpus.cases
            #expect(cases.count >= 36, "the corpus for \(worker.rawValue): \(cases.count) messages")
            var messages: [KafkaOutboundMessage] = []
            for (index, hostile) in cases.enumerated() {
                let key = Array("\(fixture.store)/k-\(index)".utf8)
                messages.append(KafkaOutboundMessage(topic: fixture.inputTopic, key: key, value: hostile.value, headers: hostile.headers))
                messages.append(KafkaOutboundMessage(topic: fixture.inputTopic, key: key, value: corpus.event(id: "good-\(index)")))
            }
            let producer = try PoisonMessageTests.largeMessageProducer()
            let reports = try await producer.send(messages).map { try $0.get() }

            let watermarks = try await fixture.waitUntilConsumed(timeout: .seconds(300))
            try await PoisonMessageTests.waitForNoLag(fixture, watermarks)
            liveness.cancel()
            #expect(process.isRunning, "the worker is still running: \(process.stderr.suffix(2000))")
            #expect(await liveness.value == 0, "/healthz stayed 200 throughout")
            let peak = Self.peakResidentBytes(process.process.processIdentifier) ?? 0
            #expect(peak > 0 && peak < Self.memoryLimit[worker] ?? 0, "peak RSS \(peak >> 20) MiB under the manifest's limit")
            print("\(worker.rawValue): \(cases.count) hostile messages, peak RSS \(peak >> 20) MiB")

            // Every hostile message dead-lettered once, with its reason and the worker's own headers.
            let dead = try await fixture.readToEnd(fixture.deadLetterTopic)
            #expect(dead.count == cases.count, "one dead letter per hostile message: \(dead.count) of \(cases.count)")
            func position(_ partition: String?, _ offset: String?) -> String { "\(partition ?? "?")/\(offset ?? "?")" }
            let bySource = Dictionary(
                dead.map { (position($0.workerHeader("dlq.source.partition"), $0.workerHeader("dlq.source.offset")), $0) },
                uniquingKeysWith: { first, _ in first })
            for (index, hostile) in cases.enumerated() {
                let report = reports[2 * index]
                guard let letter = bySource[position(String(report.topicPartition.partition), String(report.offset))] else {
                    Issue.record("\(hostile.name): no dead letter")
                    continue
                }
                #expect(letter.workerHeader("dlq.reason") == hostile.reason.rawValue, "\(hostile.name): \(letter.workerHeader("dlq.message") ?? "")")
                if let mentions = hostile.mentions {
                    #expect(letter.workerHeader("dlq.message")?.contains(mentions) == true, "\(hostile.name): \(letter.workerHeader("dlq.message") ?? "")")
                }
                #expect(letter.workerHeader("dlq.source.topic") == fixture.inputTopic, "\(hostile.name)")
                for forged in hostile.headers {
                    #expect(letter.header("original." + forged.key) == forged.value.map { String(decoding: $0, as: UTF8.self) }, "\(hostile.name): renamed")
                    #expect(letter.header(forged.key) != forged.value.map { String(decoding: $0, as: UTF8.self) } || forged.key == "dlq.source.partition")
                }
            }

            // Every good event's effect, exactly once.
            let goodIDs = cases.indices.map { "good-\($0)" }
            switch worker {
            case .capture, .receipt:
                let template = worker == .capture ? "welcome_offer" : "receipt"
                let commands = try await fixture.readToEnd(fixture.commandsTopic).compactMap { try? JSONValue.parse($0.value).objectValue }
                var counts: [String: Int] = [:]
                for command in commands where command["template"] == .string(template) { counts[command["causation_id"]?.stringValue ?? "", default: 0] += 1 }
                let wrong = goodIDs.filter { counts[$0] != 1 }
                #expect(wrong.isEmpty, "\(template) once for every good event; not for \(wrong.prefix(10)) (\(counts.count) in all)")
            case .survey:
                let rows = try await fixture.query(
                    "SELECT causation_id, count(*) FROM rapport_contact_decisions WHERE store_id = $1 AND template = 'recommend:post_survey' GROUP BY causation_id",
                    [fixture.store])
                var counts: [String: Int] = [:]
                for row in rows { counts[try row.decode(String.self, at: 0) ?? ""] = try row.decode(Int.self, at: 1) }
                let wrong = goodIDs.filter { counts[$0] != 1 }
                #expect(wrong.isEmpty, "a post_survey decision once for every good survey; not for \(wrong.prefix(10))")
                let responses = try await fixture.query("SELECT count(*) FROM survey_responses WHERE store_id = $1", [fixture.store])
                #expect(try responses.first?.decode(Int.self, at: 0) == goodIDs.count)
            }
            try await producer.close()
        }
    }
}
