/// Splits text as cl100k_base's pattern (tiktoken 0.14) does before byte-pair merging:
///
///     '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s
///
/// written out as a scanner over the text's scalars (each alternative tried in order at each
/// position, as the regex engine does), so no regex engine runs per text.
enum Pretokenizer {
    /// What the pattern distinguishes about a scalar.
    private struct Scalar {
        var value: UInt32
        var start: Int
        var isLetter: Bool
        var isNumber: Bool
        var isWhitespace: Bool

        var isNewline: Bool { value == 0x0A || value == 0x0D }
        /// Neither whitespace, letter nor number: `[^\s\p{L}\p{N}]`.
        var isOther: Bool { !isWhitespace && !isLetter && !isNumber }
    }

    /// The byte ranges of `utf8`'s pieces, in order; together they cover it.
    static func pieces(of utf8: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        let scalars = decode(utf8)
        var pieces: [Range<Int>] = []
        var i = 0
        while i < scalars.count {
            let end = pieceEnd(scalars, from: i)
            pieces.append(scalars[i].start..<(end < scalars.count ? scalars[end].start : utf8.count))
            i = end
        }
        return pieces
    }

    private static func decode(_ utf8: UnsafeBufferPointer<UInt8>) -> [Scalar] {
        var scalars: [Scalar] = []
        scalars.reserveCapacity(utf8.count)
        var decoder = UTF8()
        var iterator = utf8.makeIterator()
        var offset = 0
        while case .scalarValue(let scalar) = decoder.decode(&iterator) {
            let value = scalar.value
            if value < 0x80 {
                // ASCII, most of any text: classified without Unicode's tables.
                let byte = UInt8(value)
                let isLetter = (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A
                let isNumber = byte >= 0x30 && byte <= 0x39
                let isWhitespace = byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
                scalars.append(
                    Scalar(
                        value: value, start: offset, isLetter: isLetter, isNumber: isNumber, isWhitespace: isWhitespace)
                )
                offset += 1
                continue
            }
            let properties = scalar.properties
            let isLetter: Bool
            let isNumber: Bool
            switch properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
                (isLetter, isNumber) = (true, false)
            case .decimalNumber, .letterNumber, .otherNumber:
                (isLetter, isNumber) = (false, true)
            default:
                (isLetter, isNumber) = (false, false)
            }
            scalars.append(
                Scalar(
                    value: scalar.value, start: offset, isLetter: isLetter, isNumber: isNumber,
                    isWhitespace: properties.isWhitespace))
            offset += UTF8.width(scalar)
        }
        return scalars
    }

    /// Where the piece starting at scalar `i` ends (exclusive).
    private static func pieceEnd(_ s: [Scalar], from i: Int) -> Int {
        let n = s.count
        let c = s[i]
        // 's 't 're 've 'm 'll 'd, any case (ſ folds to s).
        if c.value == 0x27, i + 1 < n {
            let next = lowered(s[i + 1].value)
            if next == "s" || next == "t" || next == "m" || next == "d" { return i + 2 }
            if i + 2 < n {
                let pair = (next, lowered(s[i + 2].value))
                if pair == ("r", "e") || pair == ("v", "e") || pair == ("l", "l") { return i + 3 }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if c.isLetter || (!c.isNewline && !c.isLetter && !c.isNumber && i + 1 < n && s[i + 1].isLetter) {
            var j = i + 1
            while j < n, s[j].isLetter { j += 1 }
            return j
        }
        // \p{N}{1,3}
        if c.isNumber {
            var j = i + 1
            while j < n, j - i < 3, s[j].isNumber { j += 1 }
            return j
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        let start = c.value == 0x20 ? i + 1 : i
        if start < n, s[start].isOther {
            var j = start + 1
            while j < n, s[j].isOther { j += 1 }
            while j < n, s[j].isNewline { j += 1 }
            return j
        }
        // Only whitespace is left.
        var runEnd = i
        while runEnd < n, s[runEnd].isWhitespace { runEnd += 1 }
        // \s++$: a run that ends the text is one piece.
        if runEnd == n { return runEnd }
        // \s*[\r\n]: through the run's last newline.
        if let last = (i..<runEnd).last(where: { s[$0].isNewline }) { return last + 1 }
        // \s+(?!\S): all but the run's last scalar, which then starts the next piece (" word");
        // \s when that leaves nothing.
        return runEnd - i == 1 ? runEnd : runEnd - 1
    }

    /// A scalar lower-cased for the contractions' case-insensitive match.
    private static func lowered(_ value: UInt32) -> Character {
        switch value {
        case 0x41...0x5A: Character(Unicode.Scalar(value + 0x20)!)
        case 0x17F: "s"  // LATIN SMALL LETTER LONG S folds to s
        default: Unicode.Scalar(value).map(Character.init) ?? " "
        }
    }
}
