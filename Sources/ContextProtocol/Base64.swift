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
    public static func decodeFloats(_ text: String) -> [Float]? {
        var text = text
        return text.withUTF8 { utf8 -> [Float]? in
            guard utf8.count % 4 == 0 else { return nil }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(utf8.count / 4 * 3)
            var i = 0
            while i < utf8.count {
                var chunk: UInt32 = 0
                var padding = 0
                for j in 0..<4 {
                    let symbol = utf8[i + j]
                    if symbol == UInt8(ascii: "="), i + 4 == utf8.count, j >= 2 {
                        padding += 1
                        chunk <<= 6
                        continue
                    }
                    let value = values[Int(symbol)]
                    guard value != 0xFF, padding == 0 else { return nil }
                    chunk = chunk << 6 | UInt32(value)
                }
                bytes.append(UInt8(chunk >> 16 & 0xFF))
                if padding < 2 { bytes.append(UInt8(chunk >> 8 & 0xFF)) }
                if padding < 1 { bytes.append(UInt8(chunk & 0xFF)) }
                i += 4
            }
            guard bytes.count % 4 == 0 else { return nil }
            return (0..<bytes.count / 4).map { k in
                let bits =
                    UInt32(bytes[4 * k]) | UInt32(bytes[4 * k + 1]) << 8 | UInt32(bytes[4 * k + 2]) << 16
                    | UInt32(bytes[4 * k + 3]) << 24
                return Float(bitPattern: bits)
            }
        }
    }
}
