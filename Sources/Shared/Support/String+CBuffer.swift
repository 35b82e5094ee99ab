extension String {
    /// Decodes a NUL-terminated C string held in a fixed-size buffer (an error-message buffer a C call filled).
    init(cBuffer buffer: [CChar]) {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        self.init(decoding: bytes, as: UTF8.self)
    }
}
