import Foundation
import Logging

/// Writes one JSON object per log line to standard output: `ts`, `level`, `logger`, `msg`, then metadata keys.
///
/// A last line of defence for privacy: anything that looks like an email address, in the message or in metadata,
/// is written as `<email>` — code should never log one, and this makes sure none reaches the logs if it does.
public struct JSONLogHandler: LogHandler {
    /// The logger's label.
    public let label: String
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    /// A handler for `label` at `level`.
    public init(label: String, level: Logger.Level, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = level
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var line = "{\"ts\":"
        Self.appendString(Date().rfc3339, to: &line)
        line += ",\"level\":"
        Self.appendString(event.level.rawValue, to: &line)
        line += ",\"logger\":"
        Self.appendString(label, to: &line)
        line += ",\"msg\":"
        Self.appendString(Self.redactingEmails("\(event.message)"), to: &line)
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += ","
            Self.appendString(key, to: &line)
            line += ":"
            Self.appendString(Self.redactingEmails(Self.flatten(value)), to: &line)
        }
        if event.level >= .warning {
            line += ",\"source\":"
            Self.appendString("\(event.source) \((event.file as NSString).lastPathComponent):\(event.line)", to: &line)
        }
        line += "}\n"
        // One write(2) per line: lines from concurrent tasks never interleave.
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(1, base + offset, buffer.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }

    static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): "[" + values.map(flatten).joined(separator: ", ") + "]"
        case .dictionary(let values): "{" + values.sorted { $0.key < $1.key }.map { "\($0.key): \(flatten($0.value))" }.joined(separator: ", ") + "}"
        }
    }

    static func appendString(_ text: String, to line: inout String) {
        line += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                line += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: line.unicodeScalars.append(scalar)
            }
        }
        line += "\""
    }

    /// Replaces every `local@domain.tld`-shaped run of characters with `<email>`.
    public static func redactingEmails(_ text: String) -> String {
        guard text.contains("@") else { return text }
        let characters = Array(text)
        func isLocal(_ c: Character) -> Bool { c.isLetter || c.isNumber || "._%+-'".contains(c) }
        func isDomain(_ c: Character) -> Bool { c.isLetter || c.isNumber || ".-".contains(c) }
        var result = ""
        var index = 0
        var pendingStart = 0
        while index < characters.count {
            guard characters[index] == "@" else {
                index += 1
                continue
            }
            var start = index
            while start > pendingStart, isLocal(characters[start - 1]) { start -= 1 }
            var end = index + 1
            while end < characters.count, isDomain(characters[end]) { end += 1 }
            // A sentence's full stop after an address is not part of its domain.
            while end > index + 1, characters[end - 1] == "." { end -= 1 }
            let domain = characters[(index + 1)..<end]
            if start < index, domain.contains("."), domain.first != ".", domain.last != "." {
                result += String(characters[pendingStart..<start]) + "<email>"
                pendingStart = end
                index = end
            } else {
                index += 1
            }
        }
        result += String(characters[pendingStart...])
        return result
    }
}
