/// How an add catches a memory its user already has (`NewMemory.dedupe`): the add then stores
/// nothing and answers the existing memory's id.
public enum Dedupe: Sendable, Equatable {
    /// The same text once normalized (`Dedupe.sameText`).
    case exact
    /// A vector at least this similar (cosine, above 0 and at most 1) to one of the user's.
    case near(Float)

    /// The most items of one batch that may ask for a `near` dedupe: each is an exact scan of
    /// its user's vectors on the writer, which every tenant's writes wait for.
    public static let maximumNearPerBatch = 16

    /// A hash of the text as `sameText` compares it (FNV-1a of the normalized bytes): texts that
    /// are the same have the same fingerprint.
    public static func fingerprint(_ text: String) -> UInt64 {
        var bytes = NormalizedBytes(text.utf8.makeIterator())
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        while let byte = bytes.next() {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// Whether two texts are the same once normalized: ASCII letters in lower case, each run of
    /// white space one space, none at either end; every other byte as given (so "Café" and
    /// "café" differ, and two spellings of "é" do too). Compared byte by byte, allocating nothing.
    public static func sameText(_ a: String, _ b: String) -> Bool {
        var left = NormalizedBytes(a.utf8.makeIterator())
        var right = NormalizedBytes(b.utf8.makeIterator())
        while true {
            let byte = left.next()
            guard byte == right.next() else { return false }
            if byte == nil { return true }
        }
    }
}

/// A text's bytes as `Dedupe.sameText` compares them.
private struct NormalizedBytes: IteratorProtocol {
    var bytes: String.UTF8View.Iterator
    var started = false
    var pendingSpace = false
    var held: UInt8?

    init(_ bytes: String.UTF8View.Iterator) { self.bytes = bytes }

    mutating func next() -> UInt8? {
        if let byte = held {
            held = nil
            return byte
        }
        while let byte = bytes.next() {
            // Space, tab, line feed, vertical tab, form feed, carriage return.
            if byte == 32 || (9...13).contains(byte) {
                pendingSpace = started
                continue
            }
            started = true
            let lowered = (65...90).contains(byte) ? byte + 32 : byte
            guard pendingSpace else { return lowered }
            pendingSpace = false
            held = lowered
            return 32
        }
        return nil
    }
}
