/// Writes compact JSON into a growing byte array.
public struct JSONWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }

    public mutating func raw(_ byte: UInt8) { bytes.append(byte) }

    /// Appends bytes that already are JSON (fields a writer made earlier).
    public mutating func raw(_ json: [UInt8]) { bytes.append(contentsOf: json) }

    /// Writes `"key":`.
    public mutating func key(_ key: String) {
        string(key)
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        // Native strings are contiguous UTF-8; anything else is made so once.
        if text.utf8.withContiguousStorageIfAvailable({ appendEscaped($0) }) == nil {
            var contiguous = text
            contiguous.makeContiguousUTF8()
            contiguous.utf8.withContiguousStorageIfAvailable { appendEscaped($0) }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Appends UTF-8 with JSON escapes. Most strings need none: runs of plain bytes are copied
    /// in one go.
    private mutating func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        var runStart = 0
        for (i, byte) in utf8.enumerated()
        where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i]))
            runStart = i + 1
            bytes.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(byte)
            case 0x0A: bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "t"))
            default:
                bytes.append(UInt8(ascii: "u"))
                bytes.append(UInt8(ascii: "0"))
                bytes.append(UInt8(ascii: "0"))
                bytes.append(Self.hexDigits[Int(byte >> 4)])
                bytes.append(Self.hexDigits[Int(byte & 0xF)])
            }
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    public mutating func int(_ value: Int64) { raw(String(value)) }

    public mutating func bool(_ value: Bool) { raw(value ? "true" : "false") }

    public mutating func null() { raw("null") }

    /// Writes a number; integral values print without a fraction. JSON has no NaN or infinity,
    /// so those print as null.
    public mutating func number(_ value: Double) {
        guard value.isFinite else { return null() }
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
            raw(String(Int64(value)))
        } else {
            raw(value.description)
        }
    }

    /// Writes a float32 with the shortest text that reads back as the same float32.
    public mutating func number(_ value: Float) {
        guard value.isFinite else { return null() }
        raw(value.description)
    }

    /// Writes `[e0,e1,...]` with `count` elements, element `i` written by `element(&self, i)`.
    /// Indices rather than a generic collection: an unspecialized generic call from another
    /// module boxed every element (10 extra allocations for a 10-hit answer, measured).
    public mutating func array(count: Int, _ element: (inout JSONWriter, Int) -> Void) {
        bytes.append(UInt8(ascii: "["))
        for i in 0..<count {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            element(&self, i)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    public mutating func vector(_ values: [Float]) {
        array(count: values.count) { $0.number(values[$1]) }
    }

    public mutating func value(_ value: JSONValue) {
        switch value {
        case .null: null()
        case .bool(let flag): bool(flag)
        case .number(let number): self.number(number)
        case .integer(let integer): int(integer)
        case .string(let text): string(text)
        case .array(let elements):
            array(count: elements.count) { $0.value(elements[$1]) }
        case .object(let object):
            bytes.append(UInt8(ascii: "{"))
            for (i, field) in object.fields.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                key(field.key)
                self.value(field.value)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// The compact JSON text of `value`.
    public static func serialize(_ value: JSONValue) -> String {
        var writer = JSONWriter()
        writer.value(value)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
