import Foundation

/// An amount of one currency in its minor units (cents; yen, which have none; fils, a thousandth of a dinar), with
/// the contract's two spellings: a decimal string (`"59.90"`, JPY `"5990"`, BHD `"1.250"`) and one formatted for a
/// locale (`"59,90 €"`).
public struct Money: Sendable, Equatable {
    /// ISO 4217 code, upper case.
    public var currency: String
    public var minorUnits: Int64

    /// The digits after the decimal point of ISO 4217's currencies that do not have two.
    public static let exponents: [String: Int] = [
        "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0,
        "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
        "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
        "CLF": 4, "UYW": 4,
    ]

    /// Digits after the decimal point in `currency` (2 unless ISO 4217 says otherwise).
    public static func exponent(of currency: String) -> Int { exponents[currency] ?? 2 }

    /// Whether `code` has the shape of an ISO 4217 code (three letters A–Z).
    public static func isCurrencyCode(_ code: String) -> Bool {
        code.utf8.count == 3 && code.utf8.allSatisfy { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }
    }

    /// The largest amount Rapport keeps, in minor units either side of zero: 10^15 − 1 (ten trillion dollars), exact
    /// in a `Double`, and far enough from `Int64`'s limits that no sum or product of checked amounts overflows before
    /// the check.
    public static let maximumMinorUnits: Int64 = 999_999_999_999_999

    /// `amount` (a JSON number or a decimal string, in major units) rounded half away from zero to the currency's
    /// minor units; `nil` when it is not finite or beyond ``maximumMinorUnits``.
    public init?(_ amount: Decimal, currency: String) {
        guard amount.isFinite, abs(amount) < 1e16 else { return nil }
        var scaled = amount * Decimal(sign: .plus, exponent: Self.exponent(of: currency), significand: 1)
        var rounded = Decimal()
        NSDecimalRound(&rounded, &scaled, 0, .plain)
        guard rounded.isFinite, abs(rounded) <= Decimal(Self.maximumMinorUnits) else { return nil }
        self.currency = currency
        self.minorUnits = NSDecimalNumber(decimal: rounded).int64Value
    }

    /// `amount`, a JSON number in major units: `nil` unless finite and within range (``maximumMinorUnits``).
    ///
    /// The amount is read from its shortest round-trip spelling (`0.285` for the `Double` nearest 0.285, as the JSON
    /// text wrote it) and rounded half away from zero in integers, exactly as that decimal string is: 0.285 EUR is 29
    /// cents. (Through `Decimal(Double)`, as before, it was 0.28499999999999994… and 28 cents.)
    public init?(_ amount: Double, currency: String) {
        guard amount.isFinite, abs(amount) < 1e16, let minorUnits = Self.minorUnits(shortest: amount.description, exponent: Self.exponent(of: currency))
        else { return nil }
        self.currency = currency
        self.minorUnits = minorUnits
    }

    /// `text` — a `Double`'s description: `-`?, digits, `.` and digits?, `e` and a signed exponent? — in minor units
    /// of a currency with `exponent` minor digits, rounded half away from zero; `nil` beyond ``maximumMinorUnits``.
    static func minorUnits(shortest text: String, exponent: Int) -> Int64? {
        var digits: [UInt8] = []  // the significant digits, the point removed
        digits.reserveCapacity(24)
        var negative = false
        var fractionDigits = 0
        var inFraction = false
        var power = 0
        var utf8 = text.utf8[...]
        if utf8.first == UInt8(ascii: "-") {
            negative = true
            utf8 = utf8.dropFirst()
        }
        while let byte = utf8.first, byte != UInt8(ascii: "e"), byte != UInt8(ascii: "E") {
            utf8 = utf8.dropFirst()
            if byte == UInt8(ascii: ".") {
                guard !inFraction else { return nil }
                inFraction = true
            } else if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte), digits.count < 40 {
                digits.append(byte - UInt8(ascii: "0"))
                if inFraction { fractionDigits += 1 }
            } else {
                return nil
            }
        }
        if !utf8.isEmpty {
            utf8 = utf8.dropFirst()
            var sign = 1
            if let byte = utf8.first, byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+") {
                sign = byte == UInt8(ascii: "-") ? -1 : 1
                utf8 = utf8.dropFirst()
            }
            guard !utf8.isEmpty, utf8.count <= 4 else { return nil }
            for byte in utf8 {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                power = power * 10 + Int(byte - UInt8(ascii: "0"))
            }
            power *= sign
        }
        guard !digits.isEmpty else { return nil }
        // The amount is digits × 10^shift minor units.
        let shift = power - fractionDigits + exponent
        let kept = digits.count + min(shift, 0)  // digits left of the minor units' point
        var magnitude: Int64 = 0
        for digit in digits.prefix(max(kept, 0)) {
            magnitude = magnitude * 10 + Int64(digit)
            guard magnitude <= maximumMinorUnits else { return nil }
        }
        if shift > 0 {
            for _ in 0..<shift {
                magnitude *= 10
                guard magnitude <= maximumMinorUnits else { return nil }
            }
        }
        if kept >= 0, kept < digits.count, digits[kept] >= 5 { magnitude += 1 }  // half away from zero
        guard magnitude <= maximumMinorUnits else { return nil }
        return negative ? -magnitude : magnitude
    }

    /// `text`, a decimal string in major units (`"59.90"`): `nil` unless a plain decimal number within range.
    public init?(decimalText text: String, currency: String) {
        guard (1...40).contains(text.utf8.count), let amount = Decimal(string: text, locale: Locale(identifier: "en_US_POSIX")) else { return nil }
        self.init(amount, currency: currency)
    }

    /// An amount already in minor units.
    public init(minorUnits: Int64, currency: String) {
        self.currency = currency
        self.minorUnits = minorUnits
    }

    /// The amount in major units, exactly.
    public var decimal: Decimal {
        Decimal(sign: minorUnits < 0 ? .minus : .plus, exponent: -Self.exponent(of: currency), significand: Decimal(minorUnits.magnitude))
    }

    /// The contract's decimal string: all the currency's minor digits, a point only where it has some.
    public var text: String {
        let digits = Self.exponent(of: currency)
        let magnitude = String(minorUnits.magnitude)
        let sign = minorUnits < 0 ? "-" : ""
        guard digits > 0 else { return sign + magnitude }
        let padded = String(repeating: "0", count: max(0, digits + 1 - magnitude.count)) + magnitude
        return sign + padded.dropLast(digits) + "." + padded.suffix(digits)
    }

    /// The amount as `locale` writes it (symbol, grouping, decimal mark), with the currency's own minor digits.
    public func formatted(locale: String) -> String {
        let digits = Self.exponent(of: currency)
        return decimal.formatted(.currency(code: currency).locale(Locale(identifier: locale)).precision(.fractionLength(digits)))
    }

    /// `minorUnits` if it is within ±``maximumMinorUnits``.
    private static func checked(_ minorUnits: (partialValue: Int64, overflow: Bool), currency: String) -> Money? {
        guard !minorUnits.overflow, abs(minorUnits.partialValue) <= maximumMinorUnits else { return nil }
        return Money(minorUnits: minorUnits.partialValue, currency: currency)
    }

    /// The sum, or `nil` beyond ±``maximumMinorUnits``.
    public func adding(_ other: Money) -> Money? {
        Self.checked(minorUnits.addingReportingOverflow(other.minorUnits), currency: currency)
    }

    /// The difference, or `nil` beyond ±``maximumMinorUnits``.
    public func subtracting(_ other: Money) -> Money? {
        Self.checked(minorUnits.subtractingReportingOverflow(other.minorUnits), currency: currency)
    }

    /// The amount `count` times, or `nil` beyond ±``maximumMinorUnits``.
    public func multiplied(by count: Int) -> Money? {
        Self.checked(minorUnits.multipliedReportingOverflow(by: Int64(clamping: count)), currency: currency)
    }
}
