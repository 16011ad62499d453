import Foundation

/// BERT's uncased tokenizer, as the `tokenizers` library runs it for all-MiniLM-L6-v2:
/// normalize (drop control characters, whitespace to spaces, space out CJK characters, strip
/// accents, lower-case), split on whitespace and punctuation, then greedy longest-match-first
/// WordPiece with `##` continuations, a whole word becoming `[UNK]` when it cannot be matched.
public struct WordPieceTokenizer: Sendable {
    private let vocabulary: [String: Int32]
    public let clsID: Int32
    public let sepID: Int32
    public let unknownID: Int32
    /// Words longer than this many characters become `[UNK]`.
    public let maximumCharactersPerWord = 100

    /// Reads `vocab.txt`: one token per line, its id the line number.
    public init(vocabularyPath: String) throws {
        let text = try String(contentsOfFile: vocabularyPath, encoding: .utf8)
        var vocabulary: [String: Int32] = [:]
        var id: Int32 = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let token = line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
            if !token.isEmpty, vocabulary[token] == nil { vocabulary[token] = id }
            id += 1
        }
        guard let cls = vocabulary["[CLS]"], let sep = vocabulary["[SEP]"], let unk = vocabulary["[UNK]"] else {
            throw SafeTensorsError(description: "\(vocabularyPath) lacks [CLS], [SEP] or [UNK]")
        }
        self.vocabulary = vocabulary
        self.clsID = cls
        self.sepID = sep
        self.unknownID = unk
    }

    /// `[CLS] wordpieces... [SEP]`, truncated to `maximumLength` ids in all.
    public func encode(_ text: String, maximumLength: Int = 256) -> [Int32] {
        var ids: [Int32] = [clsID]
        let budget = maximumLength - 1
        for word in words(text, limit: maximumLength) {
            appendWordPieces(of: word, to: &ids)
            if ids.count >= budget { break }
        }
        if ids.count > budget { ids.removeLast(ids.count - budget) }
        ids.append(sepID)
        return ids
    }

    // MARK: - Normalization and pre-tokenization

    /// The normalized words and punctuation marks of `text`, each as its Unicode scalars; the
    /// first `limit` or more of them (every word makes at least one token, so a caller that
    /// needs n tokens asks for n words, and a long text is read no further than that).
    ///
    /// The text is normalized a run of non-space characters at a time (a space is a starter,
    /// so canonical decomposition of each run is that of the whole).
    func words(_ text: String, limit: Int = .max) -> [[Unicode.Scalar]] {
        var words: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        func finishWord() {
            if !current.isEmpty { words.append(current) }
            current.removeAll(keepingCapacity: true)
        }
        var run = String.UnicodeScalarView()
        // Strip accents (canonical decomposition without nonspacing marks), then lower-case.
        func finishRun() {
            guard !run.isEmpty else { return }
            for scalar in String(run).decomposedStringWithCanonicalMapping.unicodeScalars {
                if scalar.properties.generalCategory == .nonspacingMark { continue }
                for lower in scalar.properties.lowercaseMapping.unicodeScalars {
                    if Self.isWhitespace(lower) {
                        finishWord()
                    } else if Self.isPunctuation(lower) {
                        finishWord()
                        words.append([lower])
                    } else {
                        current.append(lower)
                    }
                }
            }
            finishWord()
            run = String.UnicodeScalarView()
        }
        for scalar in text.unicodeScalars {
            if scalar.value == 0 || scalar.value == 0xFFFD || Self.isControl(scalar) { continue }
            if Self.isWhitespace(scalar) {
                finishRun()
            } else if Self.isCJK(scalar.value) {
                finishRun()
                run.append(scalar)
                finishRun()
            } else {
                run.append(scalar)
            }
            if words.count >= limit { return words }
        }
        finishRun()
        return words
    }

    private func appendWordPieces(of word: [Unicode.Scalar], to ids: inout [Int32]) {
        guard word.count <= maximumCharactersPerWord else { return ids.append(unknownID) }
        var pieces: [Int32] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var found: Int32?
            while start < end {
                var candidate = start > 0 ? "##" : ""
                candidate.unicodeScalars.append(contentsOf: word[start..<end])
                if let id = vocabulary[candidate] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let found else { return ids.append(unknownID) }
            pieces.append(found)
            start = end
        }
        ids.append(contentsOf: pieces)
    }

    // MARK: - Character classes (as the `tokenizers` library defines them)

    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "\t", "\n", "\r", " ": true
        default: scalar.properties.isWhitespace
        }
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "\t", "\n", "\r": return false
        default:
            switch scalar.properties.generalCategory {
            case .control, .format, .surrogate, .privateUse, .unassigned: return true
            default: return false
            }
        }
    }

    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if (33...47).contains(value) || (58...64).contains(value) || (91...96).contains(value)
            || (123...126).contains(value)
        {
            return true
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
            .finalPunctuation, .otherPunctuation:
            return true
        default: return false
        }
    }

    static func isCJK(_ value: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(value) || (0x3400...0x4DBF).contains(value) || (0x20000...0x2A6DF).contains(value)
            || (0x2A700...0x2B73F).contains(value) || (0x2B740...0x2B81F).contains(value)
            || (0x2B820...0x2CEAF).contains(value) || (0xF900...0xFAFF).contains(value)
            || (0x2F800...0x2FA1F).contains(value)
    }
}
