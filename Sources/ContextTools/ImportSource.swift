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
    /// The row's fields that the mapping puts nowhere (they are not imported).
    public var unmapped: [String] = []
    /// How much of the file had been read once this row was (see `ImportSource.fractionRead`).
    public var fraction = 0.0
}

public struct ImportRowError: Error, Sendable, Equatable {
    public var reason: String
}

/// Reads the rows of an import file, one at a time, with the reader of its format. Rows without
/// an id get `<file name>:<line>`, so that running the same import again finds them already there.
public final class ImportSource {
    private var reader: any ImportReader
    /// Whether rows that name no user get one (`--user`).
    public let hasDefaultUser: Bool
    /// Which field holds what.
    public let mapping: FieldMapping

    /// How much of the file has been read, from 0 to 1 (by bytes for text files, by rows for
    /// vector files): the progress bar's fraction and ETA, without a counting pass over the file.
    public var fractionRead: Double { reader.fractionRead }

    /// - Parameters:
    ///   - texts: For vector files: a JSONL file whose line i holds `text` (and optionally `id`,
    ///     `user`, `session`, `role`, `created_at`, `metadata`) for row i.
    ///   - defaultUser: The user of rows that name none.
    ///   - mapping: Which field holds what (default: `add`'s names).
    public init(
        path: String, format: ImportFormat, texts: String? = nil, defaultUser: String?,
        mapping: FieldMapping = FieldMapping()
    ) throws {
        try mapping.validate()
        let rows = RowCompleter(
            stem: URL(fileURLWithPath: path).lastPathComponent, defaultUser: defaultUser, mapping: mapping)
        hasDefaultUser = defaultUser != nil
        self.mapping = mapping
        reader =
            switch format {
            case .jsonl: try JSONLReader(path: path, rows: rows)
            case .csv: try CSVReader(path: path, rows: rows)
            case .npy, .fvecs: try VectorFileReader(path: path, texts: texts, rows: rows)
            }
    }

    /// The next row, or nil after the last.
    public func nextRow() -> ImportRow? {
        guard var row = reader.next() else { return nil }
        row.fraction = reader.fractionRead
        return row
    }
}

/// Reads one format's rows.
protocol ImportReader {
    /// The next row, or nil after the last.
    mutating func next() -> ImportRow?
    /// How much of the file has been read, from 0 to 1.
    var fractionRead: Double { get }
}

/// Turns a row's fields into a memory the way every format does: the field mapping, the default
/// user, the `<file name>:<line>` id, an empty text when none is given, then `add`'s own checks.
struct RowCompleter {
    let stem: String
    let defaultUser: String?
    let mapping: FieldMapping
    let prepared: FieldMapping.Prepared

    init(stem: String, defaultUser: String?, mapping: FieldMapping) {
        self.stem = stem
        self.defaultUser = defaultUser
        self.mapping = mapping
        prepared = mapping.prepared()
    }

    func complete(_ row: JSONObject, line: Int, vector: [Float]? = nil) -> ImportRow {
        var fields: JSONObject
        let unmapped: [String]
        do throws(ImportRowError) {
            (fields, unmapped) = try mapping.apply(row, prepared: prepared)
        } catch {
            return ImportRow(line: line, memory: .failure(error))
        }
        if fields["user"] == nil, let defaultUser { fields["user"] = .string(defaultUser) }
        if fields["id"] == nil { fields["id"] = .string("\(stem):\(line)") }
        if fields["text"] == nil { fields["text"] = "" }
        do throws(ProtocolError) {
            var memory = try NewMemory(json: fields)
            if let vector { memory.vector = vector }
            return ImportRow(line: line, memory: .success(memory), unmapped: unmapped)
        } catch {
            return ImportRow(
                line: line, memory: .failure(ImportRowError(reason: "\(error.code.rawValue): \(error.message)")),
                unmapped: unmapped)
        }
    }

    func failure(_ reason: String, line: Int) -> ImportRow {
        ImportRow(line: line, memory: .failure(ImportRowError(reason: reason)))
    }
}

/// A text file read line by line; a read that stops early is one failed row, reported once,
/// and then the end.
struct TextLines {
    let lines: LineReader
    private var reported = false

    init(path: String) throws {
        lines = try LineReader(path: path)
    }

    var fractionRead: Double { lines.fractionRead }

    /// What a line that is not UTF-8 is reported as (the import goes on).
    static let notUTF8 = "not valid UTF-8 (a file must be UTF-8); skipped"

    mutating func readFailure(_ rows: RowCompleter) -> ImportRow? {
        guard let failure = lines.failure, !reported else { return nil }
        reported = true
        return rows.failure(failure.description, line: lines.lineNumber + 1)
    }
}

/// JSONL: one JSON object per line with the fields of an `add` request.
struct JSONLReader: ImportReader {
    private var text: TextLines
    private let rows: RowCompleter

    init(path: String, rows: RowCompleter) throws {
        text = try TextLines(path: path)
        self.rows = rows
    }

    var fractionRead: Double { text.fractionRead }

    mutating func next() -> ImportRow? {
        while let line = text.lines.next() {
            let number = text.lines.lineNumber
            if text.lines.lastLineInvalid { return rows.failure(TextLines.notUTF8, line: number) }
            if line.allSatisfy(\.isWhitespace) { continue }
            guard case .object(let object) = try? JSONParser.parse(line) else {
                return rows.failure("not a JSON object", line: number)
            }
            return rows.complete(object, line: number)
        }
        return text.readFailure(rows)
    }
}

/// CSV: a header naming the columns, then one memory per record (RFC 4180 quoting; a quoted
/// field may span lines).
struct CSVReader: ImportReader {
    private var text: TextLines
    private let rows: RowCompleter
    private let columns: [String]

    init(path: String, rows: RowCompleter) throws {
        text = try TextLines(path: path)
        self.rows = rows
        guard let header = text.lines.next() else { throw text.lines.failure ?? DataFileError("\(path) is empty") }
        guard !text.lines.lastLineInvalid else { throw DataFileError("\(path): the header is not valid UTF-8") }
        columns = CSV.fields(header)
    }

    var fractionRead: Double { text.fractionRead }

    mutating func next() -> ImportRow? {
        guard var record = text.lines.next() else { return text.readFailure(rows) }
        let line = text.lines.lineNumber
        if text.lines.lastLineInvalid { return rows.failure(TextLines.notUTF8, line: line) }
        // A quoted field may hold line breaks: the record goes on while a quote is open.
        while record.utf8.count(where: { $0 == UInt8(ascii: "\"") }) % 2 == 1 {
            guard let more = text.lines.next() else {
                return text.readFailure(rows) ?? rows.failure("a quoted field is never closed", line: line)
            }
            if text.lines.lastLineInvalid {
                return rows.failure("line \(text.lines.lineNumber) of this record is \(TextLines.notUTF8)", line: line)
            }
            record += "\n" + more
        }
        let values = CSV.fields(record)
        guard values.count == columns.count else {
            return rows.failure("\(values.count) fields, the header has \(columns.count)", line: line)
        }
        var object = JSONObject()
        for (column, value) in zip(columns, values) where !value.isEmpty {
            // metadata is JSON; vector is a JSON array, or else base64 float32 text.
            if column == rows.mapping.metadata || (column == rows.mapping.vector && value.hasPrefix("[")) {
                guard let parsed = try? JSONParser.parse(value) else {
                    return rows.failure("\(column) is not valid JSON", line: line)
                }
                object[column] = parsed
            } else {
                object[column] = .string(value)
            }
        }
        return rows.complete(object, line: line)
    }
}

/// NumPy or fvecs vectors, one per row, with the other fields from an optional JSONL texts file
/// whose line i describes row i.
struct VectorFileReader: ImportReader {
    private let vectors: VectorFile
    private let texts: LineReader?
    private let rows: RowCompleter
    private var row = 0

    init(path: String, texts: String?, rows: RowCompleter) throws {
        vectors = try VectorFile(path: path)
        self.texts = try texts.map { try LineReader(path: $0) }
        self.rows = rows
    }

    var fractionRead: Double { vectors.rows > 0 ? Double(row) / Double(vectors.rows) : 1 }

    mutating func next() -> ImportRow? {
        guard row < vectors.rows else { return nil }
        row += 1
        var object = JSONObject()
        if let texts {
            guard let line = texts.next() else {
                return rows.failure(
                    texts.failure.map { "texts file: \($0)" } ?? "no line for this row in the texts file", line: row)
            }
            if texts.lastLineInvalid { return rows.failure("texts line \(row) is \(TextLines.notUTF8)", line: row) }
            guard case .object(let fields) = try? JSONParser.parse(line) else {
                return rows.failure("texts line \(row) is not a JSON object", line: row)
            }
            // The memory's fields (through the mapping); the vector is the file's.
            object = fields
            object[rows.mapping.vector] = nil
        }
        return rows.complete(object, line: row, vector: vectors.row(row - 1))
    }
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
