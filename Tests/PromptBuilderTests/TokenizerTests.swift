import Foundation
import Testing

@testable import PromptBuilder

/// The rank file `scripts/fetch-model` fetches, found from this file's place in the repository.
let rankFile: String = {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return repository.appendingPathComponent(BytePairEncoder.defaultRankFile).path
}()

/// Loaded once: 100,256 tokens.
let sharedEncoder: BytePairEncoder? = try? BytePairEncoder(rankFile: rankFile)

/// tiktoken's ids for 304 texts (a copy of the datasets' conformance/cl100k.jsonl, kept next to this
/// file so the suite runs in a clone of this repository alone).
let referenceRows: [(text: String, tokens: [Int])] = {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Reference/cl100k.jsonl").path
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").map { line in
        let json = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        return (json["text"] as! String, json["tokens"] as! [Int])
    }
}()

@Suite struct TokenizerTests {
    @Test func everyReferenceRowIsEncodedAsTiktokenDoes() throws {
        #expect(referenceRows.count == 304, "Tests/PromptBuilderTests/Reference/cl100k.jsonl is missing")
        let encoder = try #require(sharedEncoder, "run scripts/fetch-model to fetch \(rankFile)")
        var wrong: [String] = []
        for row in referenceRows where encoder.encode(row.text) != row.tokens {
            wrong.append(row.text)
        }
        #expect(wrong.isEmpty, "\(wrong.count) rows differ, e.g. \(wrong.prefix(3))")
    }

    /// Whitespace at the ends and between lines, where cl100k's pattern is subtle (ids from
    /// tiktoken 0.14 with the same rank file).
    @Test func whitespaceEdgesAreEncodedAsTiktokenDoes() throws {
        let encoder = try #require(sharedEncoder, "run scripts/fetch-model to fetch \(rankFile)")
        let rows: [(String, [Int])] = [
            ("hello\n ", [15339, 198, 220]),
            ("hello\n  \n ", [15339, 14211, 220]),
            ("a \n", [64, 720]),
            ("x\r\n\t ", [87, 319, 3762]),
            ("  ", [256]),
            ("\n", [198]),
            (" \n", [720]),
            ("end.\n\n   ", [408, 382, 262]),
            ("tab\t", [6323, 197]),
            ("a\u{A0}b", [64, 4194, 65]),
            ("\u{3000}x", [23249, 87]),
            ("word   \n  next", [1178, 5996, 220, 1828]),
        ]
        for (text, tokens) in rows { #expect(encoder.encode(text) == tokens, "\(text.debugDescription)") }
    }

    /// cl100k makes one piece of any run of letters, and merging rescanned every pair after each
    /// merge: quadratic (a 32 KB word took 19 s). Words of up to 1 MB against tiktoken's ids (a
    /// count and an FNV-1a hash of them, with the first and last ids; made by
    /// scripts/cl100k-long-words.py), each encoded in about a second.
    @Test func wordsOfAMegabyteAreEncodedAsTiktokenDoes() throws {
        let encoder = try #require(sharedEncoder, "run scripts/fetch-model to fetch \(rankFile)")
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Reference/cl100k-long-words.json").path
        let rows = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [[String: Any]])
        #expect(rows.count == 4)
        for row in rows {
            let alphabet = Array((row["alphabet"] as! String).utf8)
            var state = UInt64(row["seed"] as! Int)
            var word = [UInt8]()
            word.reserveCapacity(row["length"] as! Int)
            for _ in 0..<(row["length"] as! Int) {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                word.append(alphabet[Int((state >> 33) % UInt64(alphabet.count))])
            }
            let started = ContinuousClock.now
            let ids = encoder.encode(String(decoding: word, as: UTF8.self))
            let took = ContinuousClock.now - started
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for id in ids { hash = (hash ^ UInt64(id)) &* 0x100_0000_01b3 }
            #expect(ids.count == row["tokens"] as! Int, "seed \(row["seed"]!)")
            #expect(String(hash) == row["fnv1a"] as! String, "seed \(row["seed"]!)")
            #expect(Array(ids.prefix(8)) == row["first"] as! [Int])
            #expect(Array(ids.suffix(8)) == row["last"] as! [Int])
            // Not a timed test (a slow machine must not fail it): the quadratic merge took hours.
            print("cl100k: \(word.count) bytes in \(took)")
        }
    }

    @Test func piecesFollowThePattern() {
        func pieces(_ text: String) -> [String] {
            var text = text
            return text.withUTF8 { utf8 in
                Pretokenizer.pieces(of: utf8).map {
                    String(decoding: UnsafeBufferPointer(rebasing: utf8[$0]), as: UTF8.self)
                }
            }
        }
        #expect(pieces("Hello, world!") == ["Hello", ",", " world", "!"])
        #expect(pieces("I'LL don't") == ["I", "'LL", " don", "'t"])
        #expect(pieces("12345 abc") == ["123", "45", " abc"])
        #expect(pieces("a  \n\n  b") == ["a", "  \n\n", " ", " b"])
        #expect(pieces("x   ") == ["x", "   "])
        #expect(pieces("x\n  ") == ["x", "\n  "])
        #expect(pieces("(hello)") == ["(hello", ")"])
        #expect(pieces("") == [])
    }

    @Test func aMissingRankFileIsNamed() {
        #expect(throws: BytePairEncoder.RankFileError.self) { try BytePairEncoder(rankFile: "/nonexistent/cl100k") }
    }
}
