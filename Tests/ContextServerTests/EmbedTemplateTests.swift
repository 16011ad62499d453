import ContextModel
import Foundation
import Testing

@testable import MemoryStore

/// What the model reads for a memory: the space's template over its fields.
@Suite struct EmbedTemplateTests {
    let turn = NewMemory(
        user: "u", session: "session_3", role: .user, speaker: "Caroline", text: "I went to the support group.",
        createdAt: 1_683_554_160_000, vector: nil)

    @Test func rendersFieldsAndLeavesOutBracketsWithAnEmptyField() throws {
        #expect(try EmbedTemplate("{text}").render(turn) == "I went to the support group.")
        #expect(try EmbedTemplate("[{speaker}: ]{text}").render(turn) == "Caroline: I went to the support group.")
        #expect(
            try EmbedTemplate("[{date}, ][{speaker} ({role}): ]{text} [#{session}]").render(turn)
                == "8 May 2023, Caroline (user): I went to the support group. #session_3")
        var anonymous = turn
        anonymous.speaker = nil
        anonymous.createdAt = nil
        anonymous.role = nil
        #expect(
            try EmbedTemplate("[{date}, ][{speaker} ({role}): ]{text}").render(anonymous)
                == "I went to the support group.")
        anonymous.speaker = ""
        #expect(try EmbedTemplate("[{speaker}: ]{text}").render(anonymous) == "I went to the support group.")
    }

    @Test func daysAreUTCCivilDates() throws {
        func day(_ iso: String) throws -> String {
            var memory = turn
            let milliseconds: Int64 = try #require(ISO8601.milliseconds(iso))
            memory.createdAt = milliseconds
            return try EmbedTemplate("{date} {text}").render(memory)
        }
        #expect(try day("1970-01-01T00:00:00Z").hasPrefix("1 January 1970 "))
        #expect(try day("1969-12-31T23:59:59.999Z").hasPrefix("31 December 1969 "))
        #expect(try day("2000-02-29T12:00:00Z").hasPrefix("29 February 2000 "))
        #expect(try day("2024-12-31T23:59:59Z").hasPrefix("31 December 2024 "))
        #expect(try day("1600-03-01T00:00:00Z").hasPrefix("1 March 1600 "))
    }

    @Test func refusesWhatItCannotRender() {
        for (template, message) in [
            ("{speaker}", "the template '{speaker}' must hold {text} outside brackets"),
            ("[{text}]", "the template '[{text}]' must hold {text} outside brackets"),
            (
                "{txt}",
                "unknown field '{txt}' in the template '{txt}'; use {text}, {speaker}, {session}, {role}, {date}"
            ),
            ("{text", "an unclosed '{' in the template '{text'"),
            ("[[{speaker}]] {text}", "brackets inside brackets in '[[{speaker}]] {text}'"),
            ("{text}]", "a ']' without '[' in '{text}]'"),
            ("[{speaker} {text}", "an unclosed '[' in the template '[{speaker} {text}'"),
        ] {
            #expect(throws: EmbedTemplate.ParseError(description: message)) { try EmbedTemplate(template) }
        }
    }

    /// A space keeps the template it was made with: vectors of another would not compare.
    @Test func aSpaceKeepsItsTemplate() throws {
        let folder = TemporaryFolder()
        let path = folder.path + "/space.db"
        try MemoryStore(path: path, dimension: 2, embedTemplate: "[{speaker}: ]{text}").close()
        let reopened = try MemoryStore(path: path)
        #expect(reopened.embedTemplate.description == "[{speaker}: ]{text}")
        reopened.close()
        #expect(
            throws: StoreError.spaceMismatch(
                .embedTemplate, "\(path) embeds memories as '[{speaker}: ]{text}', not '{text}'")
        ) { try MemoryStore(path: path, embedTemplate: "{text}") }
        // A space made without one embeds the bare text.
        try MemoryStore(path: folder.path + "/plain.db", dimension: 2).close()
        let plain = try MemoryStore(path: folder.path + "/plain.db")
        #expect(plain.embedTemplate.description == EmbedTemplate.plain)
        plain.close()
    }
}
