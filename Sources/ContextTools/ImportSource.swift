import ContextModel
import ContextProtocol
import Foundation
import MemoryStore

/// The file formats `contextstore import` reads.
public enum ImportFormat: String, Sendable, CaseIterable {
    /// One JSON object per line with the fields of an `add` request.
    case jsonl
    /// A header row naming the columns (id, user, session, role, text, created_at, metadata,
    /// vector), then one memory per row.
    case csv
    /// A 2-D float32 or float16 NumPy array, one vector per row; texts from `--texts`.
    case npy
    /// Vectors as int32 dimension + float32 values; texts from `--texts`.
    case fvecs

    /// The format named by a file's extension.
    public init?(path: String) {
        guard let dot = path.lastIndex(of: ".") else { return nil }
        self.init(rawValue: path[path.index(after: dot)...].lowercased())
    }
}

/// One row of an import file: where it was and the memory it holds, or why it holds none.
public struct ImportRow: Sendable {
    /// 1-based line (JSONL, CSV) or row (vector files) number.
    public var line: Int
    public var memory: Result<NewMemory, ImportRowError>
}

public struct ImportRowError: Error, Sendable, Equatable {
    public var reason: String
}

/// Reads the rows of an import file, one at a time. Rows without an id get `<file name>:<line>`,
/// so that running the same import again finds them already there.
public final class ImportSource {
    private let next: () -> ImportRow?
    private let progress: () -> Double

    /// How much of the file has been read, from 0 to 1 (by bytes for text files, by rows for
    /// vector files): the progress bar's fraction and ETA, without a counting pass over the file.
    public var fractionRead: Double { progress() }

    /// - Parameters:
    ///   - texts: For vector files: a JSONL file whose line i holds `text` (and optionally `id`,
    ///     `user`, `session`, `role`, `created_at`, `metadata`) for row i.
    ///   - defaultUser: The user of rows that name none.
    public init(path: String, format: ImportFormat, texts: String? = nil, defaultUser: String?) throws {
        let stem = URL(fileURLWithPath: path).lastPathComponent
        func complete(_ fields: JSONObject, line: Int, vector: [Float]? = nil) -> Result<NewMemory, ImportRowError> {
            var fields = fields
            if fields["user"] == nil, let defaultUser { fields["user"] = .string(defaultUser) }
            if fields["id"] == nil { fields["id"] = .string("\(stem):\(line)") }
            if fields["text"] == nil { fields["text"] = "" }
            do throws(ProtocolError) {
                var memory = try NewMemory(json: fields)
                if let vector { memory.vector = vector }
                return .success(memory)
            } catch {
                return .failure(ImportRowError(reason: "\(error.code.rawValue): \(error.message)"))
            }
        }
        /// A read that stopped early is one failed row, reported once, and then the end.
        func readFailure(_ lines: LineReader, reported: inout Bool) -> ImportRow? {
            guard let failure = lines.failure, !reported else { return nil }
            reported = true
            return ImportRow(line: lines.lineNumber + 1, memory: .failure(ImportRowError(reason: failure.description)))
        }
        var reported = false
        switch format {
        case .jsonl:
            let lines = try LineReader(path: path)
            progress = { lines.fractionRead }
            next = {
                while let text = lines.next() {
                    if text.allSatisfy(\.isWhitespace) { continue }
                    let line = lines.lineNumber
                    guard case .object(let object) = try? JSONParser.parse(text) else {
                        return ImportRow(line: line, memory: .failure(ImportRowError(reason: "not a JSON object")))
                    }
                    return ImportRow(line: line, memory: complete(object, line: line))
                }
                return readFailure(lines, reported: &reported)
            }
        case .csv:
            let lines = try LineReader(path: path)
            progress = { lines.fractionRead }
            guard let header = lines.next() else { throw lines.failure ?? DataFileError("\(path) is empty") }
            let columns = CSV.fields(header)
            next = {
                guard var text = lines.next() else { return readFailure(lines, reported: &reported) }
                let line = lines.lineNumber
                // A quoted field may hold line breaks: the record goes on while a quote is open.
                while text.utf8.count(where: { $0 == UInt8(ascii: "\"") }) % 2 == 1 {
                    guard let more = lines.next() else {
                        return readFailure(lines, reported: &reported)
                            ?? ImportRow(
                                line: line, memory: .failure(ImportRowError(reason: "a quoted field is never closed")))
                    }
                    text += "\n" + more
                }
                let values = CSV.fields(text)
                guard values.count == columns.count else {
                    return ImportRow(
                        line: line,
                        memory: .failure(
                            ImportRowError(reason: "\(values.count) fields, the header has \(columns.count)")))
                }
                var object = JSONObject()
                for (column, value) in zip(columns, values) where !value.isEmpty {
                    switch column {
                    case "created_at":
                        object[column] = Int64(value).map(JSONValue.integer) ?? .string(value)
                    // metadata is JSON; vector is a JSON array, or else base64 float32 text.
                    case "metadata",
                        "vector" where value.hasPrefix("["):
                        guard let parsed = try? JSONParser.parse(value) else {
                            return ImportRow(
                                line: line, memory: .failure(ImportRowError(reason: "\(column) is not valid JSON")))
                        }
                        object[column] = parsed
                    default:
                        object[column] = .string(value)
                    }
                }
                return ImportRow(line: line, memory: complete(object, line: line))
            }
        case .npy, .fvecs:
            let vectors = try VectorFile(path: path)
            let textLines = try texts.map { try LineReader(path: $0) }
            var row = 0
            progress = { vectors.rows > 0 ? Double(row) / Double(vectors.rows) : 1 }
            next = {
                guard row < vectors.rows else { return nil }
                row += 1
                var object = JSONObject()
                if let textLines {
                    guard let text = textLines.next() else {
                        let reason =
                            textLines.failure.map { "texts file: \($0)" } ?? "no line for this row in the texts file"
                        return ImportRow(line: row, memory: .failure(ImportRowError(reason: reason)))
                    }
                    guard case .object(let fields) = try? JSONParser.parse(text) else {
                        return ImportRow(
                            line: row,
                            memory: .failure(ImportRowError(reason: "texts line \(row) is not a JSON object")))
                    }
                    // The memory's own fields; their types are checked with the rest of the row.
                    for key in ["id", "user", "session", "role", "text", "created_at", "metadata"] {
                        if let value = fields[key] { object[key] = value }
                    }
                }
                return ImportRow(line: row, memory: complete(object, line: row, vector: vectors.row(row - 1)))
            }
        }
    }

    /// The next row, or nil after the last.
    public func nextRow() -> ImportRow? { next() }
}

/// RFC 4180 fields of one CSV line (quotes, doubled quotes inside quotes).
enum CSV {
    static func fields(_ line: String) -> [String] {
        var fields: [String] = []
        var current = ""
        var quoted = false
        var iterator = line.makeIterator()
        while let character = iterator.next() {
            if quoted {
                if character == "\"" {
                    if let following = iterator.next() {
                        if following == "\"" {
                            current.append("\"")
                        } else {
                            quoted = false
                            if following == "," {
                                fields.append(current)
                                current = ""
                            } else {
                                current.append(following)
                            }
                        }
                    } else {
                        quoted = false
                    }
                } else {
                    current.append(character)
                }
            } else if character == "\"" {
                quoted = true
            } else if character == "," {
                fields.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        fields.append(current)
        return fields
    }
}
