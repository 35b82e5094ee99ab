import Foundation
import InboundEvents
import Shared

/// The decoders a fuzz run exercises, chosen by `RAPPORT_FUZZ_TARGET`: the JSON parser (with a round-trip check),
/// the Segment envelope, and each worker's reading of its topic's events (which runs the envelope first, as the
/// pipeline does).
enum FuzzTarget: String, CaseIterable, Sendable {
    case json, segment, capture, receipt, survey

    /// The worker's clock during a run: fixed, so that a crash reproduces whenever it is replayed.
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    /// The target `RAPPORT_FUZZ_TARGET` names; `segment` when it is unset or unknown.
    static let selected = ProcessInfo.processInfo.environment["RAPPORT_FUZZ_TARGET"].flatMap(FuzzTarget.init(rawValue:)) ?? .segment

    /// Runs one input through the decoder. A refusal is a normal outcome; only a trap (a crash, an overflow, an
    /// out-of-bounds index) or a broken invariant is a finding.
    func run(_ bytes: ArraySlice<UInt8>) {
        switch self {
        case .json:
            guard let value = try? JSONValue.parse(bytes, limits: .events) else { return }
            // What the parser accepts, the encoder writes, and the parser reads back as the same value.
            let encoded = value.encoded()
            guard let again = try? JSONValue.parse(encoded[...]), again == value else {
                fatalError("JSON round trip changed the value: \(String(decoding: encoded, as: UTF8.self).prefix(200))")
            }
        case .segment:
            guard case .event(let message)? = try? SegmentMessage.decode(bytes, now: Self.now) else { return }
            // Every accepted message is one the rest of the worker can write: its time and its key.
            _ = message.timestamp.rfc3339
            _ = message.shopperKey
        case .capture:
            guard case .event(let message)? = try? SegmentMessage.decode(bytes, now: Self.now) else { return }
            _ = try? CaptureEvent(message)
        case .receipt:
            guard case .event(let message)? = try? SegmentMessage.decode(bytes, now: Self.now),
                let event = try? ReceiptEvent(message), case .completed(let order) = event.action
            else { return }
            // Amounts that were accepted are written as the contract's decimal strings.
            for item in order.items { _ = item.lineTotal?.text }
            _ = order.total.text
        case .survey:
            guard case .event(let message)? = try? SegmentMessage.decode(bytes, now: Self.now),
                let event = try? SurveyEvent(message), case .submitted(let submission) = event.action,
                let answers = try? Profile.Answers(submission.answers)
            else { return }
            _ = Profile([answers, answers])
        }
    }
}

#if FUZZING
    /// libFuzzer's driver (scripts/fuzz builds this target with `-sanitize=fuzzer,address -DFUZZING`). Declared here
    /// rather than through a C module: it is one function of the sanitizer's runtime, and its three arguments are
    /// passed the same way by Swift's and C's calling conventions on the platforms Rapport builds for.
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32

    /// Runs libFuzzer over ``FuzzTarget/selected`` with the command line's options and corpus folders.
    @main
    struct Fuzz {
        static func main() {
            var argc = CommandLine.argc
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
            exit(
                runFuzzerDriver(&argc, &argv) { data, size in
                    guard let data else { return 0 }
                    FuzzTarget.selected.run(ArraySlice(UnsafeBufferPointer(start: data, count: size)))
                    return 0
                })
        }
    }
#else
    /// Built plainly: `rapport-fuzz TARGET FILE|DIRECTORY…` runs each file through one decoder (a crash's input, or
    /// the seed corpus) and prints how many it ran.
    @main
    struct ReplayFuzzInputs {
        static func main() throws {
            let arguments = CommandLine.arguments.dropFirst()
            guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
                FileHandle.standardError.write(
                    Data("usage: rapport-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE|DIRECTORY…\n".utf8))
                exit(1)
            }
            var files: [URL] = []
            for path in arguments.dropFirst() {
                let url = URL(fileURLWithPath: path)
                let children = try? FileManager.default.contentsOfDirectory(at: url, includingPropertiesForKeys: nil)
                files += children?.sorted { $0.path < $1.path } ?? [url]
            }
            for file in files { target.run(ArraySlice(try Array(Data(contentsOf: file)))) }
            print("\(target.rawValue): \(files.count) inputs, no crash")
        }
    }
#endif
