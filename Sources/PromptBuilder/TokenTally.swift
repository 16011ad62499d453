import ContextModel

/// Token counts of the texts one build renders again and again: a prompt is re-rendered for every
/// fit it tries, with mostly the same lines. cl100k_base never makes a token across a line break
/// that is followed by a printable ASCII character (every alternative of its pattern that takes
/// a line break ends at the break's run of white space), so a text's count is the sum of its
/// lines' counts there; each such piece is counted once per build. The estimate rounds per text,
/// so it is taken whole.
final class TokenTally {
    let counter: TokenCounter
    private var pieces: [Substring: Int] = [:]

    init(_ counter: TokenCounter) { self.counter = counter }

    func count(_ text: String) -> Int {
        guard case .cl100k = counter else { return counter.count(text) }
        var total = 0
        var start = text.startIndex
        var previous: UInt8 = 0
        for index in text.utf8.indices {
            let byte = text.utf8[index]
            if previous == 0x0A, (0x21...0x7E).contains(byte) {
                total += piece(text[start..<index])
                start = index
            }
            previous = byte
        }
        return total + piece(text[start...])
    }

    private func piece(_ text: Substring) -> Int {
        if let known = pieces[text] { return known }
        let count = counter.count(String(text))
        pieces[text] = count
        return count
    }
}
