import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import Testing

/// The knowledge-update set (`Reference/knowledge-updates.jsonl`, written by hand): 50 short
/// conversations in which a fact (a city, a job, a partner's name, a preference) changes once or
/// twice, each stored with `supersedes` through a server with the real model. The prompt for a
/// question about now must hold the current fact and no earlier one; the prompt `as_of` a day
/// between two facts, the fact of that day and no other. Every conversation, both questions.
@Suite struct KnowledgeUpdateTests {
    static let day: Int64 = 86_400_000
    /// 1 March 2023, 00:00 UTC.
    static let start: Int64 = 1_677_628_800_000

    struct Conversation: Decodable {
        /// Day, text, the fact's value: in the order they changed.
        var facts: [[Value]]
        /// Day, text: turns about other things.
        var filler: [[Value]]
        var now: String
        /// Day, question.
        var before: [Value]

        enum Value: Decodable {
            case day(Int64)
            case text(String)

            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let day = try? container.decode(Int64.self) {
                    self = .day(day)
                } else {
                    self = .text(try container.decode(String.self))
                }
            }

            var day: Int64 {
                if case .day(let day) = self { return day }
                return -1
            }
            var text: String {
                if case .text(let text) = self { return text }
                return ""
            }
        }
    }

    static func conversations() throws -> [Conversation] {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Reference/knowledge-updates.jsonl")
        return try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(Conversation.self, from: Data($0.utf8))
        }
    }

    @Test func thePromptHoldsTheFactOfItsTimeAndNoOther() async throws {
        let conversations = try Self.conversations()
        #expect(conversations.count == 50)
        let folder = TemporaryFolder()
        let (store, server) = try await textServer(folder)
        let client = try await ContextStoreClient.connect(port: server.port)
        var nowRight = 0
        var beforeRight = 0
        for (number, conversation) in conversations.enumerated() {
            let user = "k\(number)"
            var items: [NewMemory] = []
            for (i, fact) in conversation.facts.enumerated() {
                items.append(
                    NewMemory(
                        id: "fact\(i)", user: user, session: "s", role: .user, text: fact[1].text,
                        createdAt: Self.start + fact[0].day * Self.day, vector: nil,
                        supersedes: i == 0 ? nil : "fact\(i - 1)"))
            }
            for (i, turn) in conversation.filler.enumerated() {
                items.append(
                    NewMemory(
                        id: "other\(i)", user: user, session: "s", role: .user, text: turn[1].text,
                        createdAt: Self.start + turn[0].day * Self.day, vector: nil))
            }
            try await client.addBatch(items)
            let facts = Set(conversation.facts.indices.map { "fact\($0)" })
            func holds(_ used: [String], only fact: Int) -> Bool {
                used.contains("fact\(fact)") && facts.intersection(used) == ["fact\(fact)"]
            }
            let now = try await client.prompt(
                .init(search: SearchRequest(user: user, text: conversation.now), budget: 1000))
            if holds(now.prompt.used, only: conversation.facts.count - 1) {
                nowRight += 1
            } else {
                Issue.record("\(user) now: \(now.prompt.used)")
            }
            let day = conversation.before[0].day
            let held = conversation.facts.lastIndex { $0[0].day <= day } ?? 0
            var search = SearchRequest(user: user, text: conversation.before[1].text)
            search.validity = .asOf(Self.start + day * Self.day)
            let before = try await client.prompt(.init(search: search, budget: 1000))
            if holds(before.prompt.used, only: held) {
                beforeRight += 1
            } else {
                Issue.record("\(user) as of day \(day): \(before.prompt.used)")
            }
        }
        #expect(nowRight == 50 && beforeRight == 50)
        await client.close()
        await server.shutdown()
        store.close()
    }
}
