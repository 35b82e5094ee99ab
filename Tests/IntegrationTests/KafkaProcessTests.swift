import Foundation
import Shared
import Testing

/// Kafka between OS processes: the Swift layer on both ends, the real protocol in between.
@Suite(.serialized) struct KafkaProcessTests {
    @Test func produceAndConsumeRoundTripWithKeysAndHeadersBetweenTwoProcesses() async throws {
        let prefix = TestEnvironment.unique("rt")
        let count = 2_000
        let producer = try ChildProcess(
            "rapport-tool",
            [
                "produce", "--topic", "it-roundtrip", "--count", "\(count)", "--prefix", prefix, "--keys", "7",
                "--header", "trace=abc", "--header", "content-type=application/json",
            ])
        #expect(try await producer.waitForExit() == 0, "\(producer.stderr)")

        let consumer = try ChildProcess(
            "rapport-tool", ["consume", "--topic", "it-roundtrip", "--group", TestEnvironment.unique("rt-group"), "--idle-exit", "3"])
        #expect(try await consumer.waitForExit() == 0, "\(consumer.stderr)")

        let mine = parseConsumerOutput(consumer.stdout).messages.filter { $0.value.contains("\"prefix\":\"\(prefix)\"") }
        #expect(mine.count == count)
        let missing = Set(0..<count).subtracting(mine.compactMap { sequenceNumber($0.value) })
        #expect(missing.isEmpty, "\(missing.count) messages never arrived, e.g. \(missing.sorted().prefix(5))")
        for message in mine {
            let sequence = try #require(sequenceNumber(message.value))
            #expect(message.key == "\(prefix)-\(sequence % 7)")
            #expect(message.headers == ["trace": "abc", "content-type": "application/json"])
        }
        // One key, one partition, in the order produced.
        for (_, messages) in Dictionary(grouping: mine, by: { $0.key ?? "" }) {
            #expect(Set(messages.map(\.partition)).count == 1)
            let sequences = messages.sorted { $0.offset < $1.offset }.compactMap { sequenceNumber($0.value) }
            #expect(sequences == sequences.sorted())
        }
    }

    /// Two consumer processes share a 6-partition topic; one is killed with SIGKILL; the survivor takes its
    /// partitions and never receives a message whose offset the dead one had committed.
    @Test func aKilledGroupMembersPartitionsMoveWithoutRedeliveringCommittedMessages() async throws {
        let topic = "it-group"
        let group = TestEnvironment.unique("group")
        let prefix = TestEnvironment.unique("grp")
        let fastGroup = ["KAFKA_SESSION_TIMEOUT_MS": "4000", "KAFKA_HEARTBEAT_INTERVAL_MS": "300"]
        // 20 ms of "work" per batch of 20 keeps the victim mid-stream when it is killed.
        let consumerArguments = ["consume", "--topic", topic, "--group", group, "--commit", "--batch", "20", "--pace-ms", "20"]
        let victim = try ChildProcess("rapport-tool", consumerArguments, environment: fastGroup)
        let survivor = try ChildProcess("rapport-tool", consumerArguments, environment: fastGroup)
        defer {
            victim.send(SIGKILL)
            survivor.send(SIGTERM)
        }
        try await eventually("both members assigned", timeout: .seconds(60)) {
            victim.stderr.contains("partitions assigned") && survivor.stderr.contains("partitions assigned")
                && !assignedPartitions(victim.stderr).isEmpty && !assignedPartitions(survivor.stderr).isEmpty
                && assignedPartitions(victim.stderr).isDisjoint(with: assignedPartitions(survivor.stderr))
                && assignedPartitions(victim.stderr).union(assignedPartitions(survivor.stderr)).count == 6
        }
        let victimPartitions = assignedPartitions(victim.stderr)

        let firstHalf = try ChildProcess("rapport-tool", ["produce", "--topic", topic, "--count", "3000", "--prefix", prefix, "--keys", "60"])
        #expect(try await firstHalf.waitForExit() == 0)
        try await eventually("the victim has committed some of its work") {
            !parseConsumerOutput(victim.stdout).committed.isEmpty
        }
        victim.send(SIGKILL)
        _ = try await victim.waitForExit()
        let victimOutput = parseConsumerOutput(victim.stdout)

        let secondHalf = try ChildProcess(
            "rapport-tool", ["produce", "--topic", topic, "--count", "3000", "--prefix", prefix + "-2", "--keys", "60"])
        #expect(try await secondHalf.waitForExit() == 0)

        func survivorMessages() -> [ConsumedMessage] {
            parseConsumerOutput(survivor.stdout).messages.filter { $0.value.contains(prefix) }
        }
        try await eventually("every message consumed by someone", timeout: .seconds(90)) {
            let all = Set((victimOutput.messages.filter { $0.value.contains(prefix) } + survivorMessages()).map(\.value))
            return all.count == 6000
        }
        let taken = survivorMessages().filter { victimPartitions.contains($0.partition) }
        #expect(!taken.isEmpty, "the survivor never read the victim's partitions")
        for message in taken {
            let committed = victimOutput.committed[message.partition] ?? 0
            #expect(message.offset >= committed, "offset \(message.offset) of partition \(message.partition) was committed (\(committed)) yet delivered again")
        }
        let redelivered = Set(victimOutput.messages.map(\.value)).intersection(survivorMessages().map(\.value)).count
        print(
            "group takeover: victim read \(victimOutput.messages.count), committed \(victimOutput.committed), \(redelivered) uncommitted redelivered to the survivor"
        )
    }
}

/// The partitions a `rapport-tool` process holds now, from its "partitions assigned/revoked/lost" log lines
/// (`kafka.partitions=[topic[0], topic[3]]`).
func assignedPartitions(_ log: String) -> Set<Int32> {
    var held: Set<Int32> = []
    for line in log.split(separator: "\n") {
        guard let start = line.range(of: "kafka.partitions=") else { continue }
        var partitions: [Int32] = []
        var digits: String?
        for character in line[start.upperBound...] {
            if character == "[" {
                digits = ""
            } else if character == "]" {
                if let number = digits.flatMap({ Int32($0) }) { partitions.append(number) }
                digits = nil
            } else if character.isNumber, digits != nil {
                digits?.append(character)
            } else {
                digits = nil
            }
        }
        if line.contains("partitions assigned") {
            held.formUnion(partitions)
        } else if line.contains("partitions revoked") || line.contains("partitions lost") {
            held.subtract(partitions)
        }
    }
    return held
}
