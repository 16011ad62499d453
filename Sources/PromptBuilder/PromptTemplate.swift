import ContextModel
import Foundation
import Mustache

/// How a prompt is laid out: a Mustache template (hummingbird-project/swift-mustache) over the
/// prompt's parts. Text is never HTML-escaped (the template is read as `CONTENT_TYPE: TEXT`).
///
/// What a template sees: `system`, `query` (text); `now` (the day the prompt is built, as
/// "8 May 2023", UTC: the read's `as_of` when it has one); `hasSystem`, `hasPinned`, `hasMemories`,
/// `hasSummary`, `hasRecent` (whether a section has anything); `pinned`, `memories`, `summary`
/// (sentences of older turns that did not fit, each an item holding one sentence), `recent`
/// (lists of items, each with `id`, `speaker`, `role`, `who` (the speaker, else the role), `text`, `date` ("8 May
/// 2023"), `newDay` (whether its date is not the previous item's), `before` and `beforeUntil`
/// (what a changed fact replaced, and the day it stopped holding; empty otherwise), `said`
/// ("Caroline: text", and " (until 8 May 2023: old text)" for a change) and `line` ("[8 May 2023] "
/// and `said`)). Memories are listed by day (`byDay`).
///
/// What a template may do is limited, so that its cost is known before it renders: sections
/// nest at most `maximumNesting` deep, a section over one of the lists may not sit inside a
/// section over a list (each would render once per item of the outer one: n^d lines), and the
/// delimiters may not be changed nor partials named (the scan that checks this reads `{{ }}`).
/// `renderBound` is then an upper bound of the bytes a render writes.
public struct PromptTemplate: Sendable {
    public let name: String
    private let template: MustacheTemplate
    private let shape: Shape

    /// The deepest sections may nest.
    public static let maximumNesting = 16
    /// The lists a template iterates over.
    static let lists: Set<Substring> = ["pinned", "memories", "summary", "recent"]

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
        shape = try Shape(scanning: Array(text.utf8), name: name)
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

    /// The default layout: the system text, "Known facts:", "Relevant memories:" (each day's
    /// memories under a "8 May 2023:" line), "Earlier in this conversation (summary):" (each item
    /// a "- " line), "Conversation:" (one line a turn), then the query, blocks a blank line apart.
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
            {{#newDay}}
            {{date}}:
            {{/newDay}}
            - {{said}}
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

    /// At most how many bytes rendering `parts` writes: the template's own text once, or once
    /// per item inside a list section; a field inside a list section at most every item's
    /// fields, once; a field outside, at most everything the parts hold.
    func renderBound(_ parts: PromptBuilder.Parts) -> Int {
        func size(_ item: PromptItem) -> Int {
            // id, speaker, role, who, text, date, before, beforeUntil and line, each at most this.
            3
                * (item.id.utf8.count + (item.speaker?.utf8.count ?? 0) + (item.role?.utf8.count ?? 0)
                    + item.text.utf8.count + (item.before?.text.utf8.count ?? 0) + 128)
        }
        func items(_ list: Substring) -> [PromptItem] {
            switch list {
            case "pinned": parts.pinned
            case "memories": parts.memories
            case "summary": parts.summary
            default: parts.recent
            }
        }
        let listBytes = Dictionary(uniqueKeysWithValues: Self.lists.map { ($0, items($0).reduce(0) { $0 + size($1) }) })
        let everything = parts.system.utf8.count + parts.query.utf8.count + 2 * listBytes.values.reduce(0, +) + 256
        var bound = shape.literalBytes
        for list in Self.lists { bound += items(list).count * (shape.literalBytesInside[list] ?? 0) }
        for field in shape.fields {
            let times = field.list.map { items($0).count } ?? 1
            switch field.kind {
            case .list: bound += times * everything
            case .system: bound += times * parts.system.utf8.count
            case .query: bound += times * parts.query.utf8.count
            // An item's field, once per item; outside a list, a flag ("true"), `now` (a day, as
            // "30 September 2023") or nothing.
            case .other: bound += field.list.map { listBytes[$0]! } ?? 32
            }
        }
        return bound
    }

    /// What a scan of the tags found: the template's cost, by where its text and fields are.
    private struct Shape: Sendable {
        /// What a printed name may hold.
        enum FieldKind: Sendable {
            /// It names a list: printed whole.
            case list
            case system, query
            /// An item's field inside a list, a flag outside.
            case other
        }

        var literalBytes = 0
        var literalBytesInside: [Substring: Int] = [:]
        /// Each printed name, and the list section it is inside (nil: none).
        var fields: [(list: Substring?, kind: FieldKind)] = []

        /// Reads `{{...}}` tags (and `{{{...}}}`) in one pass.
        init(scanning text: [UInt8], name: String) throws(TemplateError) {
            var open: [(name: Substring, list: Substring?)] = []
            var line = 1
            var i = 0
            func fail(_ reason: String) -> TemplateError { TemplateError(name: name, line: line, reason: reason) }
            func add(literal bytes: Int) {
                if let list = open.last(where: { $0.list != nil })?.list {
                    literalBytesInside[list, default: 0] += bytes
                } else {
                    literalBytes += bytes
                }
            }
            while i < text.count {
                guard text[i] == UInt8(ascii: "{"), i + 1 < text.count, text[i + 1] == UInt8(ascii: "{") else {
                    if text[i] == UInt8(ascii: "\n") { line += 1 }
                    add(literal: 1)
                    i += 1
                    continue
                }
                let triple = i + 2 < text.count && text[i + 2] == UInt8(ascii: "{")
                let start = i + (triple ? 3 : 2)
                var end = start
                while end + 1 < text.count, !(text[end] == UInt8(ascii: "}") && text[end + 1] == UInt8(ascii: "}")) {
                    if text[end] == UInt8(ascii: "\n") { line += 1 }
                    end += 1
                }
                guard end + 1 < text.count else { throw fail("a tag is not closed with }}") }
                let content = String(decoding: text[start..<end], as: UTF8.self).trimmingWhitespace
                i = end + 2 + (triple && end + 2 < text.count && text[end + 2] == UInt8(ascii: "}") ? 1 : 0)
                let sigil = content.first
                let tagName = String(content.dropFirst(sigil.map { "#^/!=>&{%$<".contains($0) } == true ? 1 : 0))
                    .trimmingWhitespace
                let enclosingList = open.last(where: { $0.list != nil })?.list
                switch sigil {
                case "!", "%": continue  // a comment; a pragma
                case "=": throw fail("changing the delimiters is not allowed")
                case ">", "<", "$": throw fail("partials, parents and blocks are not allowed")
                case "#", "^":
                    guard open.count < PromptTemplate.maximumNesting else {
                        throw fail("sections nest deeper than \(PromptTemplate.maximumNesting)")
                    }
                    let list = Self.list(named: tagName)
                    if sigil == "#", let list, let enclosingList {
                        throw fail("a section over '\(list)' inside one over '\(enclosingList)' renders once per pair")
                    }
                    open.append((Substring(tagName), sigil == "#" ? list : nil))
                case "/":
                    guard let last = open.popLast(), last.name == Substring(tagName) else {
                        throw fail("'{{/\(tagName)}}' closes no open section of that name")
                    }
                default:
                    let kind: FieldKind =
                        Self.list(named: tagName) != nil
                        ? .list : tagName == "system" ? .system : tagName == "query" ? .query : .other
                    fields.append((enclosingList, kind))
                }
            }
            if let unclosed = open.last { throw fail("the section '\(unclosed.name)' is not closed") }
        }

        /// The list a section's name (or a transform of it, `reversed(recent)`) iterates over.
        static func list(named name: String) -> Substring? {
            name.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }).first {
                PromptTemplate.lists.contains($0)
            }
        }
    }

    /// Memories as a template lists them: those of one day together, the days in the order of
    /// their most relevant memory, each day's memories in the order they were said. A day is
    /// then named once, and a model reads a day's words as they followed each other.
    static func byDay(_ memories: [PromptItem]) -> [PromptItem] {
        var place: [String: Int] = [:]
        let days = memories.map { EmbedTemplate.day($0.createdAt) }
        for day in days where place[day] == nil { place[day] = place.count }
        return memories.indices.sorted {
            (place[days[$0]]!, memories[$0].createdAt, $0) < (place[days[$1]]!, memories[$1].createdAt, $1)
        }.map { memories[$0] }
    }

    func render(_ parts: PromptBuilder.Parts) -> String {
        func items(_ list: [PromptItem]) -> [[String: Any]] {
            var previousDate: String?
            return list.map { item in
                let date = EmbedTemplate.day(item.createdAt)
                defer { previousDate = date }
                let who = item.speaker ?? item.role
                // A fact that changed says what held before, and until when.
                let change = item.before.map { " (until \(EmbedTemplate.day($0.until)): \($0.text))" } ?? ""
                let said = (who.map { $0 + ": " } ?? "") + item.text + change
                return [
                    "id": item.id, "speaker": item.speaker ?? "", "role": item.role ?? "", "who": who ?? "",
                    "text": item.text, "date": date, "before": item.before?.text ?? "",
                    "beforeUntil": item.before.map { EmbedTemplate.day($0.until) } ?? "",
                    "said": said, "line": "[\(date)] " + said, "newDay": date != previousDate,
                ]
            }
        }
        let context: [String: Any] = [
            "system": parts.system, "query": parts.query, "hasSystem": !parts.system.isEmpty,
            "hasPinned": !parts.pinned.isEmpty, "hasMemories": !parts.memories.isEmpty,
            "hasSummary": !parts.summary.isEmpty, "hasRecent": !parts.recent.isEmpty, "pinned": items(parts.pinned),
            "memories": items(Self.byDay(parts.memories)), "summary": items(parts.summary),
            "recent": items(parts.recent),
            "now": EmbedTemplate.day(parts.now),
        ]
        return template.render(context)
    }
}
