import Foundation

extension Date {
    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-25T05:54:55.250Z`: logs, dead-letter headers and commands.
    public var rfc3339: String {
        var text: [UInt8] = []
        text.reserveCapacity(24)
        appendRFC3339(to: &text, fractionDigits: 3)
        return String(decoding: text, as: UTF8.self)
    }

    /// Appends RFC 3339 in UTC (`2026-11-25T05:54:55.250Z`) with `fractionDigits` (0–9) digits of the second,
    /// rounded to the nearest. Hand-written: it is written per message, and a Foundation format style costs microseconds a call.
    ///
    /// Total: RFC 3339 has four-digit years, so a date outside 0000-01-01 … 9999-12-31 (or not finite) is written as
    /// the nearest end of that range rather than trapping — events outside 1970 … tomorrow are refused at decode, but
    /// a writer of logs and headers must not be the place a bad date stops a worker.
    func appendRFC3339(to text: inout [UInt8], fractionDigits: Int) {
        let fractionDigits = Swift.min(Swift.max(fractionDigits, 0), 9)
        let scale = (0..<fractionDigits).reduce(Int64(1)) { value, _ in value * 10 }
        let clamped = timeIntervalSince1970.isNaN ? 0 : Swift.min(Swift.max(timeIntervalSince1970, Self.rfc3339Earliest), Self.rfc3339Latest + 1)
        // Whole seconds and the fraction apart, so that no product leaves Int64 (2.5e11 s × 10^9 would).
        let whole = clamped.rounded(.down)
        var seconds = Int64(whole)
        var fraction = Int64(((clamped - whole) * Double(scale)).rounded())
        if seconds > Int64(Self.rfc3339Latest) {
            // The last moment of 9999.
            seconds = Int64(Self.rfc3339Latest)
            fraction = scale - 1
        } else if fraction >= scale {
            if seconds < Int64(Self.rfc3339Latest) {
                seconds += 1
                fraction = 0
            } else {
                fraction = scale - 1
            }
        }
        let (days, secondOfDay) = (seconds.floorDivided(by: 86_400), seconds.floorModulo(86_400))
        // The civil date of a day count from 1970-01-01 (Howard Hinnant's civil_from_days).
        let shifted = days + 719_468
        let era = shifted.floorDivided(by: 146_097)
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func append(_ value: Int64, width: Int) {
            // Every value here is in 0..<10^width: the date was clamped above.
            var divisor = (1..<width).reduce(Int64(1)) { value, _ in value * 10 }
            while divisor > 0 {
                text.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: (value / divisor) % 10))
                divisor /= 10
            }
        }
        append(year, width: 4)
        text.append(UInt8(ascii: "-"))
        append(month, width: 2)
        text.append(UInt8(ascii: "-"))
        append(day, width: 2)
        text.append(UInt8(ascii: "T"))
        append(secondOfDay / 3600, width: 2)
        text.append(UInt8(ascii: ":"))
        append(secondOfDay / 60 % 60, width: 2)
        text.append(UInt8(ascii: ":"))
        append(secondOfDay % 60, width: 2)
        if fractionDigits > 0 {
            text.append(UInt8(ascii: "."))
            append(fraction, width: fractionDigits)
        }
        text.append(UInt8(ascii: "Z"))
    }

    /// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z, in seconds since 1970: the four-digit years RFC 3339 writes.
    static let rfc3339Earliest: TimeInterval = -62_167_219_200
    static let rfc3339Latest: TimeInterval = 253_402_300_799

    /// Parses an RFC 3339 date-time (`2026-11-25T05:54:55.25+01:00`, `…Z`; `t`/`z` and a space for `T` accepted).
    /// Hand-written: Foundation's parser loads ICU data on first use (seconds) and costs microseconds per call.
    public init?(rfc3339 text: String) {
        let bytes = Array(text.utf8)
        var index = 0
        func digits(_ count: Int) -> Int? {
            guard index + count <= bytes.count else { return nil }
            var value = 0
            for _ in 0..<count {
                let byte = bytes[index]
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                index += 1
            }
            return value
        }
        func expect(_ characters: String) -> Bool {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2), expect("Tt "),
            let hour = digits(2), expect(":"), let minute = digits(2), expect(":"), let second = digits(2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var fraction = 0.0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                fraction += Double(bytes[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        if expect("Zz") {
            offset = 0
        } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            guard let hours = digits(2), expect(":"), let minutes = digits(2), hours < 24, minutes < 60 else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        // Days from 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        self.init(timeIntervalSince1970: Double(seconds) + fraction)
    }
}

extension Int64 {
    /// Division rounding towards negative infinity (dates before 1970 count down).
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let (quotient, remainder) = quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? quotient - 1 : quotient
    }

    /// The remainder of ``floorDivided(by:)``, always in `0..<divisor`.
    fileprivate func floorModulo(_ divisor: Int64) -> Int64 {
        let remainder = self % divisor
        return remainder < 0 ? remainder + divisor : remainder
    }
}
