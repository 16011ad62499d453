import ContextModel

#if canImport(Glibc)
    import Glibc
#endif

/// The keyword index: an SQLite FTS5 table, `memory_terms`, with one row per memory (its rowid
/// is the memory's `seq`), written in the memory's own transaction. Its columns:
/// - `scope`: the user, as one token (`scope(user:)`; a hash: a search checks the user of each
///   row it reads, so two users sharing a token cost time, never a wrong hit);
/// - `speaker`, `text`: as stored, after the scope (`scoped`);
/// - `day`: the memory's UTC day as words, "8 May 2023", after the scope, so "what did we do in
///   May?" finds it.
///
/// Tokens are Unicode letters and digits, lower-cased, accents folded (`unicode61
/// remove_diacritics 2`) and stemmed (`porter`), then prefixed with the row's scope by the
/// `scoped` tokenizer (CScopedTokenizer): each user's words have doclists of their own, so a
/// search reads its user's occurrences of a word, never another user's. Stop words are left out
/// of queries, not of the index (FTS5 has no stop-word list; a query without them ranks the same
/// and reads far fewer rows). docs/BENCHMARKS.md has what each choice measured.
///
/// Scores are BM25 over the searching user's rows alone: FTS5's `bm25()` counts every row of
/// the table, so one user's scores moved when another stored the same word (which told of
/// other tenants' words, and made a kept answer differ from a new one). A search asks FTS5 for
/// the rows that hold any of its words in the user's scope (`matches`), with each row's tokens
/// and each word's count in it, reads the user's row count and tokens (`userSizes`, kept per user
/// until the user's memories change), and scores as `bm25()` would on a table of that user's rows
/// only.
enum KeywordIndex {
    static let table = "memory_terms"
    static let tokenizer = "scoped porter unicode61 remove_diacritics 2"

    /// FTS5 writes the words of each transaction as a new segment of the index, and merges a
    /// level's segments into the next when the level holds four (its `automerge`). A search
    /// looks each of its words up in every segment; since each user's words are apart, a word's
    /// postings in a segment are few, and these lookups are most of a small user's search. So
    /// the index is merged further, a bounded step at a time (`merge`): a level's segments in
    /// pairs (`usermerge` 2, set by migration 15), until each level holds at most one. Merged
    /// with FTS5's own command, never its `optimize`, which puts the result a level above the
    /// highest and, repeated, would grow the levels without bound.
    static let pairwiseMerges = "INSERT INTO memory_terms(memory_terms, rank) VALUES('usermerge', 2);"

    /// One step of merging, writing about `?1` pages of the index (FTS5's `merge` command). It
    /// changed nothing when `sqlite3_total_changes` moved by less than two.
    static let merge = "INSERT INTO memory_terms(memory_terms, rank) VALUES('merge', ?1)"

    /// The pages (of 4 KB) one step of merging writes at most, what a write may wait behind:
    /// about 15 ms on the machine of docs/BENCHMARKS.md, where steps of 500 pages took 114 ms.
    static let mergePages = 64

    /// Why the keyword index's structure record could not be read.
    struct MalformedStructure: Error, CustomStringConvertible {
        var description: String
    }

    /// How many segments each level of the index holds, the lowest first, from FTS5's structure
    /// record (row 10 of `memory_terms_data`): a 4-byte cookie, then SQLite varints: the levels,
    /// the segments, a write counter, then for each level its merge state and its segments, and
    /// for each segment its id and first and last page.
    static func segmentsPerLevel(_ database: Database) throws -> [Int] {
        let row = try database.prepare("SELECT block FROM memory_terms_data WHERE id = 10")
        guard try row.step() else { throw MalformedStructure(description: "no structure record") }
        let record = row.bytes(at: 0)
        var position = 4
        func varint() throws -> Int {
            guard let value = KeywordIndex.varint(record, at: &position) else {
                throw MalformedStructure(description: "the structure record ends early")
            }
            return value
        }
        let levels = try varint()
        _ = try varint()
        _ = try varint()
        guard (0...record.count).contains(levels) else {
            throw MalformedStructure(description: "the structure record counts \(levels) levels")
        }
        return try (0..<levels).map { _ in
            _ = try varint()
            let segments = try varint()
            guard (0...record.count).contains(segments) else {
                throw MalformedStructure(description: "a level of the structure record counts \(segments) segments")
            }
            for _ in 0..<3 * segments { _ = try varint() }
            return segments
        }
    }

    /// The most distinct words of a query that are searched (the first ones).
    static let maximumTerms = 64

    /// The one token of a user's rows: FNV-1a of the user's bytes, its low 40 bits in decimal
    /// (digits are never stemmed). Every term of the user's words begins with it, so it is kept
    /// short: at most 13 digits, where all 64 bits took 20 and made an import's keyword writes
    /// slower (docs/BENCHMARKS.md). Among a million users, one shares its token with another
    /// with a chance of about one in a million, which costs time, never a wrong hit.
    static func scope(user: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in user.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(hash & 0xFF_FFFF_FFFF)
    }

    /// `text` in a scope (`scope(user:)`): the scope, the separator the `scoped` tokenizer looks
    /// for, then the text, whose every token the tokenizer prefixes with the scope.
    static func scoped(_ text: String, scope: String) -> String {
        scope + "\u{1}" + text
    }

    /// A memory's keyword row after its rowid: scope, speaker, text, day (what `index`, the
    /// migration's fill and `check` all write or expect).
    static func columns(user: String, speaker: String?, text: String, createdAt: Int64) -> [String] {
        let scope = scope(user: user)
        return [
            scope, scoped(speaker ?? "", scope: scope), scoped(text, scope: scope),
            scoped(EmbedTemplate.day(createdAt), scope: scope),
        ]
    }

    /// The words of `text` a keyword search looks for: stop words left out (unless it has
    /// nothing else), each once, at most `maximumTerms`.
    static func terms(_ text: String) -> [String] {
        let words = self.words(text)
        var terms = words.filter { !stopWords.contains($0) }
        if terms.isEmpty { terms = words }
        var seen = Set<String>()
        return Array(terms.filter { seen.insert($0).inserted }.prefix(maximumTerms))
    }

    /// The user's rows that hold any of the words, with what BM25 needs of each (see
    /// `Database.registerTermCounts`): `?1` is `matchExpression(user:terms:)`.
    static let matches = """
        SELECT rowid, \(Database.termCountsFunction)(memory_terms) FROM memory_terms WHERE memory_terms MATCH ?1
        """

    /// The FTS5 query of a search: any of the words in the user's scope in the searched columns,
    /// each word a phrase of its own (so `term_counts` counts each), in `terms`' order. The words
    /// are tokenized by the index's own tokenizer, as its rows were.
    static func matchExpression(user: String, terms: [String]) -> String {
        func quoted(_ text: String) -> String {
            "\"" + text.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
        }
        let scope = scope(user: user)
        return "{speaker text day} : (" + terms.map { quoted(scoped($0, scope: scope)) }.joined(separator: " OR ") + ")"
    }

    /// The tokens of every column of each of `user`'s rows (FTS5's record of them).
    static let userSizes = """
        SELECT d.id, d.sz FROM memory_terms_docsize d WHERE d.id IN (SELECT seq FROM memories WHERE user = ?1)
        """

    /// The tokens of a row, all columns: the sum of the varints of FTS5's `docsize` record.
    static func tokens(inSizes blob: [UInt8]) -> Int {
        var total = 0
        var position = 0
        while let value = varint(blob, at: &position) { total += value }
        return total
    }

    /// The SQLite varint at `position` in `bytes` (7 bits a byte, high bit set on all but the
    /// last, of at most 9, the ninth whole), moving `position` past it; nil at the end of the
    /// bytes. A varint the bytes cut short ends where they do.
    static func varint(_ bytes: [UInt8], at position: inout Int) -> Int? {
        guard position < bytes.count else { return nil }
        var value = 0
        for length in 1...9 {
            guard position < bytes.count else { break }
            let byte = bytes[position]
            position += 1
            if length == 9 { return (value << 8) | Int(byte) }
            value = (value << 7) | Int(byte & 0x7F)
            if byte & 0x80 == 0 { break }
        }
        return value
    }

    /// BM25 as FTS5's `bm25()` computes it (k1 1.2, b 0.75, a word's weight the sum of its
    /// occurrences in speaker, text and day), over the rows of one user: `rows` and `tokens`
    /// are that user's row count and tokens (all columns), `holding[t]` how many of its rows
    /// hold term t, `occurrences[t]` how often this row does, `length` this row's tokens.
    static func bm25<Counts: Collection>(
        rows: Int, tokens: Int, holding: [Int], occurrences: Counts, length: Int
    ) -> Double where Counts.Element: BinaryInteger {
        let (k1, b) = (1.2, 0.75)
        let averageLength = Double(tokens) / Double(max(1, rows))
        var score = 0.0
        for (term, count) in occurrences.enumerated() where count > 0 {
            var idf = log((Double(rows) - Double(holding[term]) + 0.5) / (Double(holding[term]) + 0.5))
            if idf <= 0 { idf = 1e-6 }
            let frequency = Double(count)
            score +=
                idf * (frequency * (k1 + 1))
                / (frequency + k1 * (1 - b + b * Double(length) / averageLength))
        }
        return score
    }

    /// The lower-cased runs of letters, digits and marks of `text`, as unicode61 splits it.
    static func words(_ text: String) -> [String] {
        var words: [String] = []
        var current = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                .decimalNumber, .letterNumber, .otherNumber, .nonspacingMark, .spacingMark, .enclosingMark,
                .privateUse:
                current.append(scalar)
            default:
                if !current.isEmpty { words.append(String(current).lowercased()) }
                current = String.UnicodeScalarView()
            }
        }
        if !current.isEmpty { words.append(String(current).lowercased()) }
        return words
    }

    /// English function words, split as the tokenizer splits them ("didn't" is "didn" and "t").
    static let stopWords: Set<String> = [
        "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "aren", "as", "at",
        "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "cannot", "could",
        "couldn", "d", "did", "didn", "do", "does", "doesn", "doing", "don", "down", "during", "each", "few", "for",
        "from", "further", "had", "hadn", "has", "hasn", "have", "haven", "having", "he", "her", "here", "hers",
        "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its", "itself",
        "let", "ll", "m", "me", "more", "most", "mustn", "my", "myself", "no", "nor", "not", "of", "off", "on",
        "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own", "re", "s", "same",
        "shan", "she", "should", "shouldn", "so", "some", "such", "t", "than", "that", "the", "their", "theirs",
        "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under",
        "until", "up", "ve", "very", "was", "wasn", "we", "were", "weren", "what", "when", "where", "which", "while",
        "who", "whom", "why", "with", "won", "would", "wouldn", "you", "your", "yours", "yourself", "yourselves",
    ]
}

extension KeywordIndex {
    /// Indexes every stored memory (migration 7), logging progress every `step` rows of a large file.
    static func fill(_ database: Database, log: (String) -> Void, step: Int = 100_000) throws {
        let total = Int(try database.scalarInt("SELECT count(*) FROM memories"))
        if total >= step { log("indexing the keywords of \(total) memories") }
        let rows = try database.prepare("SELECT seq, user, speaker, text, created_at FROM memories ORDER BY seq")
        let insert = try database.prepare(SQL.indexTerms)
        var done = 0
        while try rows.step() {
            let row = columns(
                user: rows.string(at: 1) ?? "", speaker: rows.string(at: 2), text: rows.string(at: 3) ?? "",
                createdAt: rows.int64(at: 4))
            try insert.execute(
                StatementArguments(values: [rows.int64(at: 0)] + row.map { $0 as any StatementBindable }))
            done += 1
            if done % step == 0 { log("indexed the keywords of \(done) of \(total) memories") }
        }
        if total >= step { log("keyword index ready: \(total) memories") }
    }
}
