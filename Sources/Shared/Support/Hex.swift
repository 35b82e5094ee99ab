/// The lowercase hexadecimal digit (`0`–`9`, `a`–`f`) for `nibble` (0–15).
@inline(__always)
func hexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
}

extension FixedWidthInteger where Self: UnsignedInteger {
    /// Appends all of the value's hexadecimal digits, zero-padded, most significant first.
    func appendHex(to bytes: inout [UInt8]) {
        for shift in stride(from: Self.bitWidth - 4, through: 0, by: -4) {
            bytes.append(hexDigit(UInt8(truncatingIfNeeded: self >> shift) & 0x0F))
        }
    }
}
