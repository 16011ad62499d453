import ContextModel
import Foundation
import Mustache

/// How a prompt is laid out: a Mustache template (hummingbird-project/swift-mustache) over the
/// prompt's parts. Text is never HTML-escaped (the template is read as `CONTENT_TYPE: TEXT`).
///
/// What a template sees: `system`, `query` (text); `hasSystem`, `hasPinned`, `hasMemories`,
/// `hasSummary`, `hasRecent` (whether a section has anything); `pinned`, `memories`, `summary`
/// (sentences of older turns that did not fit, each an item holding one sentence), `recent`
/// (lists of items, each with `id`, `speaker`, `role`, `who` (the speaker, else the role), `text`, `date` ("8 May
/// 2023") and `line` ("[8 May 2023] Caroline: text")).
public struct PromptTemplate: Sendable {
    public let name: String
    private let template: MustacheTemplate

    /// Why a template was refused.
    public struct TemplateError: Error, Equatable, CustomStringConvertible {
        public var name: String
        public var line: Int
        public var reason: String
        public var description: String { "template \(name), line \(line): \(reason)" }
    }

    /// Parses `text`.
    /// - Throws: `TemplateError` naming the template and the line where parsing failed.
    public init(name: String, text: String) throws(TemplateError) {
        self.name = name
        do {
            // The pragma on a line of its own (a standalone tag: the line leaves no trace), so
            // the template's line n is line n + 1 here.
            template = try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT }}\n" + text)
        } catch let error as MustacheTemplate.ParserError {
            throw TemplateError(name: name, line: max(1, error.context.lineNumber - 1), reason: "\(error.error)")
        } catch {
            throw TemplateError(name: name, line: 1, reason: "\(error)")
        }
    }

    /// The default layout: the system text, "Known facts:", "Relevant memories:", "Earlier in
    /// this conversation (summary):" (each item a "- " line), "Conversation:" (one line a turn),
    /// then the query, blocks a blank line apart.
    /// Its own words, with every section present, are under 60 tokens (a test counts them).
    public static let standard = try! PromptTemplate(
        name: "standard",
        text: """
            {{#hasSystem}}
            {{system}}

            {{/hasSystem}}
            {{#hasPinned}}
            Known facts:
            {{#pinned}}
            - {{line}}
            {{/pinned}}

            {{/hasPinned}}
            {{#hasMemories}}
            Relevant memories:
            {{#memories}}
            - {{line}}
            {{/memories}}

            {{/hasMemories}}
            {{#hasSummary}}
            Earlier in this conversation (summary):
            {{#summary}}
            - {{line}}
            {{/summary}}

            {{/hasSummary}}
            {{#hasRecent}}
            Conversation:
            {{#recent}}
            {{line}}
            {{/recent}}

            {{/hasRecent}}
            {{query}}
            """)

    /// The templates of a folder: each `NAME.mustache` file, by NAME (other files are left alone).
    /// - Throws: `TemplateError` for the first file that cannot be read or parsed, named by its
    ///   path, with its line.
    public static func load(directory: String) throws(TemplateError) -> [String: PromptTemplate] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw TemplateError(
                name: directory, line: 0, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        var templates: [String: PromptTemplate] = [:]
        for file in names.sorted() where file.hasSuffix(".mustache") {
            let path = directory + "/" + file
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
            else { throw TemplateError(name: path, line: 0, reason: "cannot read the file as UTF-8") }
            templates[String(file.dropLast(".mustache".count))] = try PromptTemplate(name: path, text: text)
        }
        return templates
    }

    func render(_ parts: PromptBuilder.Parts) -> String {
        func items(_ list: [PromptItem]) -> [[String: Any]] {
            list.map { item in
                let date = EmbedTemplate.day(item.createdAt)
                let who = item.speaker ?? item.role
                return [
                    "id": item.id, "speaker": item.speaker ?? "", "role": item.role ?? "", "who": who ?? "",
                    "text": item.text, "date": date,
                    "line": "[\(date)] " + (who.map { $0 + ": " } ?? "") + item.text,
                ]
            }
        }
        let context: [String: Any] = [
            "system": parts.system, "query": parts.query, "hasSystem": !parts.system.isEmpty,
            "hasPinned": !parts.pinned.isEmpty, "hasMemories": !parts.memories.isEmpty,
            "hasSummary": !parts.summary.isEmpty, "hasRecent": !parts.recent.isEmpty, "pinned": items(parts.pinned),
            "memories": items(parts.memories), "summary": items(parts.summary), "recent": items(parts.recent),
        ]
        return template.render(context)
    }
}
