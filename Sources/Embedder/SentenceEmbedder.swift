import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Turns texts into sentence embeddings with a BERT model: WordPiece ids, the encoder, mean
/// pooling over the tokens, L2 normalization (the sentence-transformers recipe of
/// all-MiniLM-L6-v2). Loaded once and shared read-only by every thread.
public final class SentenceEmbedder: Sendable {
    /// Identifies the model: the name of its folder (e.g. `all-MiniLM-L6-v2`).
    public let modelID: String
    /// Length of the vectors produced.
    public var dimension: Int { model.configuration.hiddenSize }
    /// Texts are cut to this many tokens, `[CLS]` and `[SEP]` included.
    public let maximumTokens: Int

    let tokenizer: WordPieceTokenizer
    private let model: BertModel
    private let cache: EmbeddingCache
    private let tokensRun = Atomic<Int>(0)
    // Tokens per forward pass: bounds scratch memory (about 10 KB per token) and spreads a large
    // request over the cores.
    private static let tokensPerPass = 2048
    private static let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Loads `vocab.txt`, `config.json` and `model.safetensors` from `folder`.
    /// - Parameter cacheBytes: The embedding cache's budget: texts and vectors together.
    public init(folder: String, maximumTokens: Int = 256, cacheBytes: Int = 64 * 1024 * 1024) throws {
        let trimmed = folder.hasSuffix("/") ? String(folder.dropLast()) : folder
        modelID = String(trimmed.split(separator: "/").last ?? Substring(trimmed))
        tokenizer = try WordPieceTokenizer(vocabularyPath: trimmed + "/vocab.txt")
        model = try BertModel(folder: trimmed)
        self.maximumTokens = min(maximumTokens, model.configuration.maximumPositions)
        cache = EmbeddingCache(byteCapacity: cacheBytes)
    }

    /// The token ids the model sees for `text`.
    public func tokenize(_ text: String) -> [Int32] {
        tokenizer.encode(text, maximumLength: maximumTokens)
    }

    /// How many tokens `text` has, `[CLS]` and `[SEP]` included, when that is more than the
    /// model reads at once (`maximumTokens`); nil when the model reads all of it.
    public func tokensBeyondLimit(_ text: String) -> Int? { allTokens(text)?.count }

    /// The most tokens of one text that are read: the windows cover about 3,300, and a longer
    /// text's count is reported up to this many (an 8 MiB text is not tokenized whole).
    public static let maximumCountedTokens = 65_536

    /// `text`'s token ids (at most `maximumCountedTokens`), when there are more than
    /// `maximumTokens`; nil otherwise.
    private func allTokens(_ text: String) -> [Int32]? {
        // A token spans at least one byte of text: a text this short always fits.
        guard text.utf8.count > maximumTokens - 2 else { return nil }
        let ids = tokenizer.encode(text, maximumLength: Self.maximumCountedTokens)
        return ids.count > maximumTokens ? ids : nil
    }

    /// A stored text's embeddings: `vector` of its first `maximumTokens` tokens (the model's
    /// own reading, as sentence-transformers does), and for a longer text `windows`, the
    /// embeddings of overlapping windows over the rest, so that what its tail says is found too.
    public struct DocumentEmbedding: Sendable, Equatable {
        public var vector: [Float]
        /// Windows after the first, in order; empty for a text the model reads whole.
        public var windows: [[Float]]
        /// Set for a text longer than `maximumWindows` windows reach.
        public var cut: Cut?
    }

    /// A text's tokens (`[CLS]` and `[SEP]` included) and how many of them its windows cover.
    public struct Cut: Sendable, Equatable {
        public var tokens: Int
        public var covered: Int
    }

    /// The most windows (the first included) one text is embedded in: 16 cover about 3,300
    /// tokens (some 13,000 characters of English); the rest of a longer text is cut, and
    /// `coveredTokens` says so.
    public static let maximumWindows = 16
    /// Tokens two neighbouring windows share, so a sentence cut by one window's end is whole in
    /// the next.
    public static let windowOverlap = 64

    /// `DocumentEmbedding`s of `texts`, in order, each text cached under the scope at its
    /// position in `scopes`. The first window of each text goes through `embed` (and its
    /// cache); further windows run in one more call to the model.
    public func embedDocuments(_ texts: [String], scopes: [String]) -> [DocumentEmbedding] {
        let first = embed(texts, scopes: scopes)
        let width = maximumTokens - 2
        let stride = width - Self.windowOverlap
        var documents = first.map { DocumentEmbedding(vector: $0, windows: [], cut: nil) }
        var windowSequences: [[Int32]] = []
        var owners: [Int] = []
        for (i, text) in texts.enumerated() {
            guard let ids = allTokens(text) else { continue }
            let content = ids[1..<(ids.count - 1)]
            var start = stride
            var windows = 1
            while start + Self.windowOverlap < content.count, windows < Self.maximumWindows {
                let end = min(start + width, content.count)
                let slice = content[(content.startIndex + start)..<(content.startIndex + end)]
                windowSequences.append([ids[0]] + slice + [ids[ids.count - 1]])
                owners.append(i)
                windows += 1
                start += stride
            }
            let covered = (windows - 1) * stride + width + 2
            if covered < ids.count { documents[i].cut = Cut(tokens: ids.count, covered: covered) }
        }
        for (owner, vector) in zip(owners, embedSequences(windowSequences)) { documents[owner].windows.append(vector) }
        return documents
    }

    /// Cache hits and misses since start, and how many texts the cache holds.
    public var cacheStatistics: (hits: Int, misses: Int, entries: Int, bytes: Int) { cache.statistics }

    /// Drops the cached embeddings of `scope`'s texts (see `embed(_:scope:)`); returns how many
    /// went, or with `countOnly`, how many there are.
    public func dropCached(scope: String, countOnly: Bool = false) -> Int {
        cache.drop(scope: scope, countOnly: countOnly)
    }

    /// Tokens the model has run since the start (`[CLS]` and `[SEP]` included; texts answered
    /// from the cache are not run again).
    public var tokensEmbedded: Int { tokensRun.load(ordering: .relaxed) }

    /// One unit-length embedding per text, in order, cached under `scope`: a text another scope
    /// embedded is not a hit (see `EmbeddingCache`). Texts already in the cache are not
    /// embedded again; the rest run through the model in passes spread over the cores.
    public func embed(_ texts: [String], scope: String) -> [[Float]] {
        embed(texts, scopes: Array(repeating: scope, count: texts.count))
    }

    /// One unit-length embedding per text, in order, each cached under the scope at its
    /// position in `scopes`.
    public func embed(_ texts: [String], scopes: [String]) -> [[Float]] {
        precondition(texts.count == scopes.count, "one scope per text")
        var results = [[Float]?](repeating: nil, count: texts.count)
        var pending: [EmbeddingCache.Key: [Int]] = [:]  // key -> positions still to fill
        for (position, text) in texts.enumerated() {
            let key = EmbeddingCache.Key(model: modelID, scope: scopes[position], text: text)
            if let cached = cache.get(key) {
                results[position] = cached
            } else {
                pending[key, default: []].append(position)
            }
        }
        if !pending.isEmpty {
            let keys = Array(pending.keys)
            let vectors = embedUncached(keys.map(\.text))
            for (key, vector) in zip(keys, vectors) {
                cache.put(key, vector)
                for position in pending[key]! { results[position] = vector }
            }
        }
        return results.map { $0! }
    }

    /// Runs the model; no cache.
    func embedUncached(_ texts: [String]) -> [[Float]] {
        embedSequences(texts.map(tokenize))
    }

    /// Runs the model over token sequences (each at most `maximumTokens` long); no cache.
    func embedSequences(_ sequences: [[Int32]]) -> [[Float]] {
        guard !sequences.isEmpty else { return [] }
        tokensRun.wrappingAdd(sequences.reduce(0) { $0 + $1.count }, ordering: .relaxed)
        // Passes of at most tokensPerPass tokens, at least one per core when there are enough
        // texts, balanced by tokens: longest first, each to the lightest pass. Sequences are
        // packed without padding, so a pass may mix lengths freely.
        let totalTokens = sequences.reduce(0) { $0 + $1.count }
        let passCount = min(
            sequences.count, max(Self.cores, (totalTokens + Self.tokensPerPass - 1) / Self.tokensPerPass))
        var passes = [[Int]](repeating: [], count: passCount)
        var load = [Int](repeating: 0, count: passCount)
        for index in sequences.indices.sorted(by: { sequences[$0].count > sequences[$1].count }) {
            let lightest = load.indices.min { load[$0] < load[$1] }!
            passes[lightest].append(index)
            load[lightest] += sequences[index].count
        }
        let results = UnsafeMutableBufferPointer<[Float]>.allocate(capacity: sequences.count)
        results.initialize(repeating: [])
        defer { results.deallocate() }
        nonisolated(unsafe) let output = results
        let model = self.model
        let plan = passes
        DispatchQueue.concurrentPerform(iterations: plan.count) { pass in
            let members = plan[pass]
            let states = model.hiddenStates(members.map { sequences[$0] })
            let hidden = model.configuration.hiddenSize
            var row = 0
            for member in members {
                let count = sequences[member].count
                var pooled = [Float](repeating: 0, count: hidden)
                for token in 0..<count {
                    for j in 0..<hidden { pooled[j] += states[(row + token) * hidden + j] }
                }
                row += count
                var norm: Float = 0
                for j in 0..<hidden {
                    pooled[j] /= Float(count)
                    norm += pooled[j] * pooled[j]
                }
                let scale = 1 / max(norm.squareRoot(), 1e-12)
                output[member] = pooled.map { $0 * scale }
            }
        }
        return Array(results)
    }
}
