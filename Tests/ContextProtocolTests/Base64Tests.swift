import Testing

@testable import ContextProtocol

/// A seeded generator (SplitMix64), so a failure comes back on every run.
private struct Seeded: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Base64 vectors: what decodes and what is refused, against a plain decoder written from RFC
/// 4648 one symbol at a time.
@Suite struct Base64Tests {
    /// The plain decoder: each group of four symbols to three bytes, "=" only at the end of the
    /// last group, then every four bytes a little-endian float32.
    static func reference(_ text: String) -> [Float]? {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        let symbols = Array(text.utf8)
        guard symbols.count % 4 == 0 else { return nil }
        var bytes: [UInt8] = []
        for group in stride(from: 0, to: symbols.count, by: 4) {
            var chunk: UInt32 = 0
            var padding = 0
            for j in 0..<4 {
                let symbol = symbols[group + j]
                if symbol == UInt8(ascii: "="), group + 4 == symbols.count, j >= 2 {
                    padding += 1
                    chunk <<= 6
                    continue
                }
                guard let value = alphabet.firstIndex(of: symbol), padding == 0 else { return nil }
                chunk = chunk << 6 | UInt32(value)
            }
            bytes += [UInt8(chunk >> 16 & 0xFF), UInt8(chunk >> 8 & 0xFF), UInt8(chunk & 0xFF)].prefix(3 - padding)
        }
        guard bytes.count % 4 == 0 else { return nil }
        return stride(from: 0, to: bytes.count, by: 4).map { k in
            var bits: UInt32 = 0
            for j in 0..<4 { bits |= UInt32(bytes[k + j]) << UInt32(8 * j) }
            return Float(bitPattern: bits)
        }
    }

    @Test func decodesWhatItEncodesBitForBit() {
        var generator = Seeded(state: 42)
        for count in 0..<40 {
            let vector = (0..<count).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))
            }
            let decoded = Base64.decodeFloats(Base64.encode(vector))
            #expect(decoded?.map(\.bitPattern) == vector.map(\.bitPattern), "\(count) floats")
        }
    }

    /// Random texts of base64 symbols, "=" and other bytes, most of them near valid: the same
    /// answer as the plain decoder, nil or the same bits.
    @Test func refusesWhatThePlainDecoderRefuses() {
        var generator = Seeded(state: 42)
        let symbols = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        let others = Array("=-_ .\u{0}\n\u{7F}".utf8) + [0x80, 0xFF]
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...6, using: &generator) * 4 + (Bool.random(using: &generator) ? 0 : 1)
            var bytes = (0..<length).map { _ in symbols.randomElement(using: &generator)! }
            for _ in 0..<Int.random(in: 0...2, using: &generator) where !bytes.isEmpty {
                // Near the end, where padding goes, or anywhere.
                let nearEnd = bytes.count - 1 - Int.random(in: 0...2, using: &generator)
                let place =
                    Bool.random(using: &generator) ? nearEnd : Int.random(in: 0..<bytes.count, using: &generator)
                if place >= 0 { bytes[place] = others.randomElement(using: &generator)! }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(
                Base64.decodeFloats(text)?.map(\.bitPattern) == Self.reference(text)?.map(\.bitPattern), "\(text)")
        }
        #expect(Base64.decodeFloats("") == [])
        #expect(Base64.decodeFloats("AACAPw==") == [1])
        for refused in ["AACAPw=", "AACAP===", "AACA", "AAC=Pw==", "=ACAPw==", "AACAP=w=", "AACAPw=A"] {
            #expect(Base64.decodeFloats(refused) == nil, "\(refused)")
        }
    }
}
