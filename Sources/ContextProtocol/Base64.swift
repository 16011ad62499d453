/// Base64 (RFC 4648, with padding) for vectors sent as little-endian float32 bytes.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, symbol) in alphabet.enumerated() { table[Int(symbol)] = UInt8(value) }
        return table
    }()

    /// The base64 text of `vector`'s little-endian float32 bytes.
    public static func encode(_ vector: [Float]) -> String {
        let byteCount = vector.count * 4
        let length = (byteCount + 2) / 3 * 4
        #if _endian(big)
            let vector = vector.map { Float(bitPattern: $0.bitPattern.byteSwapped) }
        #endif
        return vector.withUnsafeBytes { raw in
            String(unsafeUninitializedCapacity: length) { text in
                alphabet.withUnsafeBufferPointer { alphabet in
                    var out = 0
                    var i = 0
                    while i < byteCount {
                        let b0 = UInt32(raw[i])
                        let b1 = i + 1 < byteCount ? UInt32(raw[i + 1]) : 0
                        let b2 = i + 2 < byteCount ? UInt32(raw[i + 2]) : 0
                        let chunk = b0 << 16 | b1 << 8 | b2
                        text[out] = alphabet[Int(chunk >> 18 & 63)]
                        text[out + 1] = alphabet[Int(chunk >> 12 & 63)]
                        text[out + 2] = i + 1 < byteCount ? alphabet[Int(chunk >> 6 & 63)] : UInt8(ascii: "=")
                        text[out + 3] = i + 2 < byteCount ? alphabet[Int(chunk & 63)] : UInt8(ascii: "=")
                        out += 4
                        i += 3
                    }
                }
                return length
            }
        }
    }

    /// The float32 values encoded in `text`, or nil when it is not base64 of a multiple of 4 bytes.
    /// Decoded straight into the floats' storage: a search's 384-component query is 2 KB of it.
    public static func decodeFloats(_ text: String) -> [Float]? {
        var text = text
        return text.withUTF8 { utf8 -> [Float]? in
            let count = utf8.count
            guard count % 4 == 0 else { return nil }
            guard count > 0 else { return [] }
            // "=" may only end the last group of four, in its third and fourth places.
            let padding = utf8[count - 1] != UInt8(ascii: "=") ? 0 : utf8[count - 2] == UInt8(ascii: "=") ? 2 : 1
            let byteCount = count / 4 * 3 - padding
            guard byteCount % 4 == 0 else { return nil }
            // Every symbol's value ORed: the table's 0xFF (not base64) sets the top bit.
            var seen: UInt8 = 0
            let floats = [Float](unsafeUninitializedCapacity: byteCount / 4) { buffer, initialized in
                let out = UnsafeMutableRawBufferPointer(buffer).bindMemory(to: UInt8.self)
                values.withUnsafeBufferPointer { table in
                    func value(_ i: Int) -> UInt32 {
                        let value = table[Int(utf8[i])]
                        seen |= value
                        return UInt32(value)
                    }
                    var (i, o) = (0, 0)
                    while i < count - 4 {
                        let chunk = value(i) << 18 | value(i + 1) << 12 | value(i + 2) << 6 | value(i + 3)
                        out[o] = UInt8(truncatingIfNeeded: chunk >> 16)
                        out[o + 1] = UInt8(truncatingIfNeeded: chunk >> 8)
                        out[o + 2] = UInt8(truncatingIfNeeded: chunk)
                        (i, o) = (i + 4, o + 3)
                    }
                    let third = padding < 2 ? value(i + 2) : 0
                    let fourth = padding < 1 ? value(i + 3) : 0
                    let chunk = value(i) << 18 | value(i + 1) << 12 | third << 6 | fourth
                    for (k, shift) in [16, 8, 0].enumerated() where o + k < byteCount {
                        out[o + k] = UInt8(truncatingIfNeeded: chunk >> UInt32(shift))
                    }
                }
                initialized = seen & 0x80 == 0 ? byteCount / 4 : 0
            }
            guard seen & 0x80 == 0 else { return nil }
            #if _endian(big)
                return floats.map { Float(bitPattern: $0.bitPattern.byteSwapped) }
            #else
                return floats
            #endif
        }
    }
}
