/// Deterministic command ids: the same (store, causation, name) always gives the same id, so a command that reaches
/// the wire twice (a crash between publishing and deleting it from the outbox) is recognisable downstream.
///
/// The id is the 128-bit FNV-1a hash of the three parts (each length-prefixed, so that no two different triples
/// share an input), written in the 8-4-4-4-12 hexadecimal form of a UUID.
public enum CommandID {
    /// The id of the command named `name` (a template or a recommendation context) that `causation` (a message id
    /// or a scheduled step's id) caused in `store`.
    public static func make(store: String, causation: String, name: String) -> String {
        var hash = FNV128()
        for part in [store, causation, name] {
            hash.add(UInt32(part.utf8.count))
            hash.add(part.utf8)
        }
        return hash.uuidString
    }
}

/// FNV-1a with 128-bit state: offset basis 0x6c62272e07bb014262b821756295c58d, prime 2^88 + 0x13b.
struct FNV128 {
    private var high: UInt64 = 0x6c62_272e_07bb_0142
    private var low: UInt64 = 0x62b8_2175_6295_c58d

    mutating func add(_ bytes: some Sequence<UInt8>) {
        for byte in bytes { add(byte) }
    }

    mutating func add(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { add(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    mutating func add(_ byte: UInt8) {
        low ^= UInt64(byte)
        // (high, low) × (2^88 + 0x13b) mod 2^128 = (high, low) × 0x13b + (low << 88)
        let lowProduct = low.multipliedFullWidth(by: 0x13b)
        let newHigh = high &* 0x13b &+ lowProduct.high &+ (low << 24)
        low = lowProduct.low
        high = newHigh
    }

    var uuidString: String {
        var digits: [UInt8] = []
        digits.reserveCapacity(32)
        high.appendHex(to: &digits)
        low.appendHex(to: &digits)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (index, digit) in digits.enumerated() {
            if index == 8 || index == 12 || index == 16 || index == 20 { text.append(UInt8(ascii: "-")) }
            text.append(digit)
        }
        return String(decoding: text, as: UTF8.self)
    }
}
