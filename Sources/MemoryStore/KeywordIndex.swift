import ContextModel

/// The keyword index: an SQLite FTS5 table, `memory_terms`, with one row per memory (its rowid
/// is the memory's `seq`), written in the memory's own transaction. Its columns:
/// - `scope`: the user, as one token (`scope(user:)`), so a search matches only its user's rows
///   (a hash: a search checks the user of each row it reads, so two users sharing a token cost
///   time, never a wrong hit);
/// - `speaker`, `text`: as stored;
/// - `day`: the memory's UTC day as words, "8 May 2023", so "what did we do in May?" finds it.
///
/// Tokens are Unicode letters and digits, lower-cased, accents folded (`unicode61
/// remove_diacritics 2`) and stemmed (`porter`); stop words are left out of queries, not of the
/// index (FTS5 has no stop-word list; a query without them ranks the same and reads far fewer
/// rows). docs/BENCHMARKS.md has what each choice measured.
enum KeywordIndex {
    static let table = "memory_terms"
    static let tokenizer = "porter unicode61 remove_diacritics 2"

    /// The most distinct words of a query that are searched (the first ones).
    static let maximumTerms = 64

    /// The one token of a user's rows: FNV-1a of the user's bytes, in decimal (digits are never
    /// stemmed).
    static func scope(user: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in user.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(hash)
    }

    /// A memory's keyword row after its rowid: scope, speaker, text, day (what `index`, the
    /// migration's fill and `check` all write or expect).
    static func columns(user: String, speaker: String?, text: String, createdAt: Int64) -> [String] {
        [scope(user: user), speaker ?? "", text, EmbedTemplate.day(createdAt)]
    }

    /// The FTS5 query for `text` within `user`'s rows: any of its words (stop words left out,
    /// unless it has nothing else), in speaker, text or day. Nil when it has no word at all.
    /// - Parameter scoped: Match the user's scope token; a space whose rows are all the user's
    ///   is searched without it (the token's list is then every row, and reading it along made
    ///   queries over 10,000 rows 70% slower).
    static func match(user: String, text: String, scoped: Bool = true) -> String? {
        let words = self.words(text)
        var terms = words.filter { !stopWords.contains($0) }
        if terms.isEmpty { terms = words }
        var seen = Set<String>()
        terms = terms.filter { seen.insert($0).inserted }
        guard !terms.isEmpty else { return nil }
        // Each word quoted: FTS5 reads it as a phrase of the tokens it holds, never as syntax.
        let any = terms.prefix(maximumTerms).map { "\"\($0)\"" }.joined(separator: " OR ")
        let anyWord = "{speaker text day} : (\(any))"
        return scoped ? "scope : \"\(scope(user: user))\" AND " + anyWord : anyWord
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

extension KeywordIndex {
    /// BM25 over speaker, text and day (the scope column weighs nothing), negated so that
    /// higher is better.
    static let relevance = "-bm25(memory_terms, 0.0, 1.0, 1.0, 1.0)"
}
