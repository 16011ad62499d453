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

/// tiktoken's ids for 304 texts (a copy of ../shared/conformance/cl100k.jsonl, kept next to this
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
        #expect(pieces("(hello)") == ["(hello", ")"])
        #expect(pieces("") == [])
    }

    @Test func aMissingRankFileIsNamed() {
        #expect(throws: BytePairEncoder.RankFileError.self) { try BytePairEncoder(rankFile: "/nonexistent/cl100k") }
    }
}
