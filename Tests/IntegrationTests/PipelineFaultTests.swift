import Foundation
import Shared
import Testing

/// The pipeline's guarantees under faults: killed workers, members coming and going, PostgreSQL going away.
@Suite(.serialized) struct PipelineFaultTests {
    /// 20,000 keyed events streaming in while the worker is killed with SIGKILL at random moments and restarted,
    /// five times: one effect per event, every command id on the output topic.
    @Test func effectsStayExactlyOnceWhileTheWorkerIsKilledAtRandom() async throws {
        try await TestEnvironment.withPipeline(5) { fixture in
            let total = 20_000
            fixture.extraEnvironment = ["BATCH_SIZE": "200"]
            let producing = Task {
                for start in stride(from: 0, to: total, by: 500) {
                    try await fixture.publish((start..<(start + 500)).map { fixture.event(shopper: $0 % 200, sequence: $0) })
                    try await Task.sleep(for: .milliseconds(150))
                }
            }
            var (worker, _) = try await fixture.startWorker()
            for kill in 1...5 {
                // Kill mid-work: only once this incarnation has applied something (300 events, or what is left of the
                // stream when less is: a fast machine may be that close to the end), then at a random moment.
                let before = try await fixture.effectCount()
                let target = min(before + 300, total)
                try await eventually("progress before kill \(kill)", timeout: .seconds(90)) { try await fixture.effectCount() >= target }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...1500)))
                worker.send(SIGKILL)
                _ = try await worker.waitForExit()
                print("kill \(kill): \(try await fixture.effectCount()) effects")
                (worker, _) = try await fixture.startWorker()
            }
            try await producing.value
            try await fixture.waitUntilConsumed(timeout: .seconds(180))
            #expect(try await fixture.effectCount() == total)
            let effects = try await fixture.query("SELECT count(DISTINCT message_id) FROM echo_effects WHERE store_id = $1", [fixture.store])
            #expect(try effects.first?.decode(Int.self, at: 0) == total)
            let commands = try await fixture.readToEnd(fixture.commandsTopic, timeout: .seconds(120))
            let ids = Set(commands.map(commandID))
            #expect(ids.count == total, "every expected command id is on the topic")
            let expectedIDs = Set((0..<total).map { CommandID.make(store: fixture.store, causation: "shopper-\($0 % 200)-\($0)", name: "echo") })
            #expect(ids == expectedIDs)
            #expect(try duplicatesDifferInContent(commands) == 0)
            print("SIGKILL x5: \(commands.count - ids.count) commands reached the wire twice, each with identical content")
            #expect(try await fixture.readToEnd(fixture.deadLetterTopic).isEmpty, "no effect was attempted twice")
        }
    }

    /// A second and third worker join and leave during a stream: each member is assigned partitions and does work,
    /// effects stay exactly once, each shopper's events are applied in sequence order, and no command is published
    /// twice.
    @Test func membersJoiningAndLeavingKeepEachShoppersOrder() async throws {
        try await TestEnvironment.withPipeline(6) { fixture in
            fixture.extraEnvironment = ["BATCH_SIZE": "100"]
            var total = 0
            // The stream goes on while the group changes: each wait below publishes 50 more events per turn.
            func publishMore() async throws {
                try await fixture.publish((total..<(total + 50)).map { fixture.event(shopper: $0 % 100, sequence: $0) })
                total += 50
            }
            func handled(_ port: Int) async -> Double {
                await metric(port, "rapport_events_total{topic=\"\(fixture.inputTopic)\",type=\"track\",outcome=\"handled\"}")
            }
            let (_, firstPort) = try await fixture.startWorker()
            try await eventually("the first member handles events", timeout: .seconds(60)) {
                try await publishMore()
                return await handled(firstPort) > 0
            }
            let (second, secondPort) = try await fixture.startWorker()
            try await eventually("the second member is assigned partitions and handles events", timeout: .seconds(60)) {
                try await publishMore()
                return await handled(secondPort) > 0
            }
            let (third, thirdPort) = try await fixture.startWorker()
            try await eventually("the third member is assigned partitions and handles events", timeout: .seconds(60)) {
                try await publishMore()
                return await handled(thirdPort) > 0
            }
            second.send(SIGTERM)
            #expect(try await second.waitForExit(timeout: .seconds(25)) == 0, "\(second.stdout.suffix(2500)) \(second.stderr.suffix(1500))")
            let beforeThirdLeaves = await handled(thirdPort)
            try await eventually("the third member handles more once the second left", timeout: .seconds(60)) {
                try await publishMore()
                return await handled(thirdPort) > beforeThirdLeaves
            }
            third.send(SIGTERM)
            #expect(try await third.waitForExit(timeout: .seconds(25)) == 0, "\(third.stderr.suffix(3000))")
            for _ in 0..<10 { try await publishMore() }
            try await fixture.waitUntilConsumed()
            #expect(await handled(firstPort) > 0)
            let rows = try await fixture.query(
                "SELECT shopper_key, sequence FROM echo_effects WHERE store_id = $1 ORDER BY shopper_key, applied", [fixture.store])
            var last: [String: Int64] = [:]
            var outOfOrder = 0
            for row in rows {
                let shopper = try row.decode(String.self, at: 0) ?? ""
                let sequence = try row.decode(Int64.self, at: 1) ?? 0
                if let previous = last[shopper], previous > sequence { outOfOrder += 1 }
                last[shopper] = sequence
            }
            #expect(rows.count == total)
            #expect(outOfOrder == 0, "each shopper's events applied in sequence order")
            #expect(try await fixture.readToEnd(fixture.deadLetterTopic).isEmpty)
            let commands = try await fixture.readToEnd(fixture.commandsTopic)
            #expect(Set(commands.map(commandID)).count == total)
            // Partitions move only once the rows on their way are sent (`Publication`): no orderly rebalance or
            // shutdown leaves the next owner rows to publish again.
            #expect(commands.count == total, "\(commands.count - total) commands reached the wire twice")
        }
    }

    /// PostgreSQL stopped for 10 s mid-stream, then started: readiness false then true, nothing lost or doubled.
    @Test(.enabled(if: TestEnvironment.postgresDirectory != nil, "needs a PostgreSQL that scripts/test started"))
    func postgresGoingAwayPausesTheWorkerWithoutLosingOrDoublingAnything() async throws {
        let directory = try #require(TestEnvironment.postgresDirectory)
        try await TestEnvironment.withPipeline(7) { fixture in
            let total = 4000
            fixture.extraEnvironment = ["BATCH_SIZE": "100"]
            let (worker, port) = try await fixture.startWorker()
            try await eventually("ready", timeout: .seconds(30)) { await probe(port, "/readyz")?.status == 200 }
            let producing = Task {
                for start in stride(from: 0, to: total, by: 200) {
                    try await fixture.publish((start..<(start + 200)).map { fixture.event(shopper: $0 % 30, sequence: $0) })
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            try await eventually("some applied", timeout: .seconds(60)) { try await fixture.effectCount() >= 400 }
            try await runScript("pg-stop", directory)
            try await eventually("not ready while PostgreSQL is down", timeout: .seconds(15)) { await probe(port, "/readyz")?.status == 503 }
            #expect(await probe(port, "/healthz")?.status == 200, "alive: the poll loop keeps turning")
            try await Task.sleep(for: .seconds(10))
            try await runScript("pg-start", directory)
            try await eventually("ready again", timeout: .seconds(60)) { await probe(port, "/readyz")?.status == 200 }
            try await producing.value
            try await fixture.waitUntilConsumed()
            #expect(try await fixture.effectCount() == total)
            let commands = try await fixture.readToEnd(fixture.commandsTopic)
            #expect(Set(commands.map(commandID)).count == total)
            #expect(try duplicatesDifferInContent(commands) == 0)
            #expect(try await fixture.readToEnd(fixture.deadLetterTopic).isEmpty)
            #expect(worker.isRunning, "the worker rode the outage out")
        }
    }
}
