import ContextModel

/// An extractive summary of conversation turns: their sentences ranked by how central each is
/// to all of them (cosine similarity to the mean of their embeddings), so the first few say
/// what the turns were mostly about.
enum ExtractiveSummary {
    /// The most sentences ranked (the latest ones, nearest the turns the prompt keeps): each is
    /// embedded, and 64 short sentences take about 0.15 s at the model's batch rate.
    static let maximumSentences = 64

    struct Ranked {
        /// A turn with its text cut to one sentence.
        var sentence: PromptItem
        /// Its place in the turns, so the chosen ones can be shown in order.
        var position: Int
    }

    /// The turns' sentences, most central first (ties: the earlier first).
    static func rank(_ turns: [PromptItem], embed: ([String]) -> [[Float]]) -> [Ranked] {
        var sentences: [PromptItem] = []
        for turn in turns {
            for text in split(turn.text) {
                var sentence = turn
                sentence.text = text
                sentence.vector = nil
                sentences.append(sentence)
            }
        }
        sentences = Array(sentences.suffix(maximumSentences))
        guard !sentences.isEmpty else { return [] }
        let vectors = embed(sentences.map(\.text)).map(Vectors.unit)
        guard vectors.count == sentences.count, let dimension = vectors.first?.count else { return [] }
        var centre = [Float](repeating: 0, count: dimension)
        for vector in vectors where vector.count == dimension {
            for i in 0..<dimension { centre[i] += vector[i] }
        }
        let scores = vectors.map { vector in
            vector.count == dimension ? Vectors.dot(vector, centre) : -.infinity
        }
        return sentences.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            .map { Ranked(sentence: sentences[$0], position: $0) }
    }

    /// A text's sentences: cut after `.`, `!` or `?` followed by white space, and at line
    /// breaks; pieces without a letter or digit are left out.
    static func split(_ text: String) -> [String] {
        var sentences: [String] = []
        var current = ""
        var ended = false
        func close() {
            let sentence = current.trimmingWhitespace
            if sentence.contains(where: { $0.isLetter || $0.isNumber }) { sentences.append(sentence) }
            current = ""
        }
        for character in text {
            if character.isNewline {
                close()
            } else if ended, character.isWhitespace {
                close()
            } else {
                current.append(character)
            }
            ended = character == "." || character == "!" || character == "?"
        }
        close()
        return sentences
    }
}

extension String {
    var trimmingWhitespace: String {
        var text = Substring(self)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}
