import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import Logging
import MemoryStore
import Synchronization
import Testing

@testable import ContextTools

final class Folder: Sendable {
    let path = NSTemporaryDirectory() + "contextstore-import-" + UUID().uuidString
    init() { try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, _ text: String) -> String {
        let file = path + "/" + name
        _ = FileManager.default.createFile(atPath: file, contents: Data(text.utf8))
        return file
    }
}

/// Collects the failures an import reports.
final class Failures: Sendable {
    let list = Mutex<[ImportFailure]>([])
    var all: [ImportFailure] { list.withLock { $0.sorted { $0.line < $1.line } } }
    func record(_ failure: ImportFailure) { list.withLock { $0.append(failure) } }
}

/// What stopped or spoiled an import (issue 24, item 21): a line that is not UTF-8 ended it, a
/// batch longer than the server's line got the connection closed, and a key's rate made every
/// row of a refused batch a "bad row".
@Suite struct ImportResilienceTests {
    @Test func aLineThatIsNotUTF8IsReportedAndSkipped() async throws {
        let folder = Folder()
        let file = folder.path + "/rows.jsonl"
        var bytes = Array(#"{"id":"a","user":"u","text":"one","vector":[1,0]}"#.utf8) + [0x0A]
        bytes +=
            Array(#"{"id":"b","user":"u","text":"t"#.utf8) + [0xFF, 0xFE] + Array(#"","vector":[1,0]}"#.utf8) + [0x0A]
        bytes += Array(#"{"id":"c","user":"u","text":"three","vector":[0,1]}"#.utf8) + [0x0A]
        _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 2)
        let failures = Failures()
        let summary = try await Importer(batchSize: 10).run(
            ImportSource(path: file, format: .jsonl, defaultUser: nil), into: DatabaseSink(store: store, embedder: nil),
            onFailure: failures.record)
        #expect(summary.imported == 2 && summary.failed == 1)
        #expect(failures.all.map(\.line) == [2])
        #expect(failures.all.first?.reason == "not valid UTF-8 (a file must be UTF-8); skipped")
        store.close()
    }

    @Test func aBatchLongerThanTheServersLineGoesInParts() async throws {
        let folder = Folder()
        let text = String(repeating: "x", count: 1000)
        let rows = (0..<300).map { #"{"id":"r\#($0)","user":"u","text":"\#(text)","vector":[1,\#($0)]}"# }
        let file = folder.write("rows.jsonl", rows.joined(separator: "\n"))
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 2)
        var configuration = ServerConfiguration(port: 0, threads: 2)
        configuration.maximumLineBytes = 64 * 1024
        let server = try await ContextStoreServer(
            store: store, configuration: configuration, logger: Logger(label: "t"))
        let client = try await ContextStoreClient.connect(port: server.port)
        let summary = try await Importer(batchSize: 300).run(
            ImportSource(path: file, format: .jsonl, defaultUser: nil),
            into: ServerSink(client: client, maximumLineBytes: 64 * 1024), onFailure: { _ in })
        #expect(summary.imported == 300 && summary.failed == 0)
        await client.close()
        await server.shutdown()
        store.close()
    }

    @Test func aKeysRateSlowsAnImportDownAndLosesNoRow() async throws {
        let folder = Folder()
        let rows = (0..<600).map { #"{"id":"r\#($0)","user":"u","text":"t","vector":[1,\#($0)]}"# }
        let file = folder.write("rows.jsonl", rows.joined(separator: "\n"))
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 2)
        var configuration = ServerConfiguration(port: 0, threads: 2)
        let key = AccessKey(
            name: "loader", secret: "loader-secret-0123456789", role: .app, users: ["u"],
            rate: Rate(perSecond: 200, burst: 20))
        configuration.keys = KeyRing([key])
        let server = try await ContextStoreServer(
            store: store, configuration: configuration, logger: Logger(label: "t"))
        let client = try await ContextStoreClient.connect(port: server.port, secret: "loader-secret-0123456789")
        let failures = Failures()
        // Batches of 100 cost 7.25 each: a burst of 20 takes two, then the rate refuses.
        let summary = try await Importer(batchSize: 100, inFlight: 4).run(
            ImportSource(path: file, format: .jsonl, defaultUser: nil), into: ServerSink(client: client),
            onFailure: failures.record)
        #expect(summary.imported == 600 && summary.failed == 0, "\(failures.all.prefix(2))")
        #expect(store.count == 600)
        await client.close()
        await server.shutdown()
        store.close()
    }
}

@Suite struct ImportTests {
    let jsonl = """
        {"id":"a","user":"u1","text":"first","vector":[1,0,0],"role":"user","created_at":5,"metadata":{"k":1}}
        {"user":"u2","text":"no id","vector":[0,1,0]}
        not json
        {"text":"no user, takes the default","vector":[0,0,1]}
        {"id":"bad","user":"u1","text":"short vector","vector":[1,0]}

        {"id":"nan","user":"u1","text":"t","vector":[NaN,0,0]}
        """

    @Test func jsonlIntoADatabaseFileReportsBadRowsAndSkipsOnRerun() async throws {
        let folder = Folder()
        let file = folder.write("memories.jsonl", jsonl)
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 3, metric: .dot)
        let failures = Failures()
        let importer = Importer(batchSize: 2)
        let sink = DatabaseSink(store: store, embedder: nil)
        let first = try await importer.run(
            ImportSource(path: file, format: .jsonl, defaultUser: "fallback"), into: sink, onFailure: failures.record)
        #expect(first.imported == 3)
        #expect(first.skipped == 0)
        #expect(first.failed == 3)
        #expect(failures.all.map(\.line) == [3, 5, 7])
        #expect(failures.all[0].reason == "not a JSON object")
        #expect(failures.all[1].reason == "wrong_dimension: 2 components, the space has 3")
        #expect(failures.all[2].reason == "non_finite: vector[0] is not a finite float32 (nan)")
        #expect(
            try store.get(user: "u1", id: "a")
                == Memory(
                    id: "a", user: "u1", role: .user, text: "first", createdAt: 5, metadata: #"{"k":1}"#,
                    vector: [1, 0, 0]))
        #expect(try store.get(user: "u2", id: "memories.jsonl:2") != nil)
        #expect(try store.get(user: "fallback", id: "memories.jsonl:4") != nil)

        let again = try await importer.run(
            ImportSource(path: file, format: .jsonl, defaultUser: "fallback"), into: sink, onFailure: { _ in })
        #expect(again.imported == 0)
        #expect(again.skipped == 3)
        #expect(store.count == 3)
        store.close()
    }

    /// A rerun skips only rows stored as they are: a row whose id its user has with other
    /// content is a conflict, reported on its line and counted, never counted as skipped.
    @Test(arguments: [false, true])
    func aChangedRowIsAConflictNotASkip(overTheProtocol: Bool) async throws {
        let folder = Folder()
        let rows = (0..<5).map { #"{"id":"t\#($0)","user":"u","text":"turn \#($0)","vector":[1,\#($0),0]}"# }
        let original = folder.write("turns.jsonl", rows.joined(separator: "\n"))
        var changed = rows
        changed[1] = #"{"id":"t1","user":"u","text":"another turn 1","vector":[1,1,0]}"#
        changed[3] = #"{"id":"t3","user":"u","text":"turn 3","vector":[1,3,0],"session":"s"}"#
        changed.append(#"{"id":"t1","user":"v","text":"v's own t1","vector":[0,0,1]}"#)
        let edited = folder.write("edited.jsonl", changed.joined(separator: "\n"))
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 3, metric: .dot)
        let server = try await ContextStoreServer(
            store: store, configuration: ServerConfiguration(port: 0, threads: 2), logger: Logger(label: "test"))
        let client = try await ContextStoreClient.connect(port: server.port)
        let sink: any ImportSink =
            overTheProtocol ? ServerSink(client: client) : DatabaseSink(store: store, embedder: nil)
        let source = { (file: String) in try ImportSource(path: file, format: .jsonl, defaultUser: nil) }
        let first = try await Importer(batchSize: 2).run(source(original), into: sink, onFailure: { _ in })
        #expect(first.imported == 5 && first.conflicts == 0)
        let failures = Failures()
        let second = try await Importer(batchSize: 2).run(source(edited), into: sink, onFailure: failures.record)
        #expect(second.imported == 1 && second.skipped == 3 && second.conflicts == 2 && second.failed == 0)
        #expect(failures.all.map(\.line) == [2, 4])
        #expect(failures.all[0].reason == "conflict: user 'u' has a memory 't1' with other content; not stored")
        #expect(try store.get(user: "u", id: "t1")?.text == "turn 1")
        #expect(try store.get(user: "v", id: "t1")?.text == "v's own t1")
        await client.close()
        await server.shutdown()
        store.close()
    }

    @Test func rowsWithoutAUserAndNoDefaultAreOneError() async throws {
        let folder = Folder()
        let file = folder.write(
            "nouser.jsonl", (0..<50).map { #"{"text":"t\#($0)","vector":[1,0,0]}"# }.joined(separator: "\n"))
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 3, metric: .dot)
        let failures = Failures()
        await #expect(
            throws: ImportError(
                description:
                    "line 1 names no user: give every row a 'user' field, name the field that holds the user with --user-field, or pass --user for the rows that have none"
            )
        ) {
            try await Importer().run(
                ImportSource(path: file, format: .jsonl, defaultUser: nil),
                into: DatabaseSink(store: store, embedder: nil),
                onFailure: failures.record)
        }
        #expect(failures.all.isEmpty)
        #expect(store.count == 0)
        store.close()
    }

    /// A file shaped like the LoCoMo turns: the user is the conversation, the time is text in
    /// its own form, the speaker is the memory's (and copied into metadata as well), and a field
    /// nobody mapped is reported.
    @Test(arguments: [ImportFormat.jsonl, .csv])
    func fieldMappingReadsAFileWithOtherNames(format: ImportFormat) async throws {
        let folder = Folder()
        let rows: [(conv: String, date: String, id: String, speaker: String, text: String)] = [
            ("conv-1", "1:56 pm on 8 May, 2023", "D1:1", "Caroline", "Hey Mel!"),
            ("conv-1", "1:56 pm on 8 May, 2023", "D1:2", "Melanie", "Hi, Caroline"),
            ("conv-2", "10:37 am on 27 June, 2023", "D1:1", "Jon", "same id, other conversation"),
        ]
        let file =
            format == .jsonl
            ? folder.write(
                "turns.jsonl",
                rows.map {
                    #"{"conv":"\#($0.conv)","session":"s1","date":"\#($0.date)","id":"\#($0.id)","speaker":"\#($0.speaker)","text":"\#($0.text)","vector":[1,0,0],"extra":1}"#
                }.joined(separator: "\n"))
            : folder.write(
                "turns.csv",
                "conv,session,date,id,speaker,text,vector,extra\n"
                    + rows.map { "\($0.conv),s1,\"\($0.date)\",\($0.id),\($0.speaker),\"\($0.text)\",\"[1,0,0]\",1" }
                    .joined(separator: "\n"))
        var mapping = FieldMapping()
        mapping.user = "conv"
        mapping.time = "date"
        mapping.timeFormat = .pattern("h:mm a 'on' d MMMM, yyyy")
        mapping.metadataFields = ["speaker"]
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 3, metric: .dot)
        let failures = Failures()
        let summary = try await Importer().run(
            ImportSource(path: file, format: format, defaultUser: nil, mapping: mapping),
            into: DatabaseSink(store: store, embedder: nil), onFailure: failures.record)
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(summary.imported == 3 && summary.unmapped == ["extra": 3])
        #expect(
            try store.get(user: "conv-1", id: "D1:2")
                == Memory(
                    id: "D1:2", user: "conv-1", session: "s1", speaker: "Melanie", text: "Hi, Caroline",
                    createdAt: 1_683_554_160_000,
                    metadata: #"{"speaker":"Melanie"}"#, vector: [1, 0, 0]))
        #expect(try store.get(user: "conv-2", id: "D1:1")?.createdAt == 1_687_862_220_000)
        #expect(try store.get(user: "conv-1", id: "D1:1")?.text == "Hey Mel!")
        store.close()
    }

    @Test func aTimeThatDoesNotMatchItsFormatFailsItsRowByName() async throws {
        let folder = Folder()
        let file = folder.write(
            "t.jsonl",
            """
            {"u":"a","when":"8 May 2023","text":"x","vector":[1,0,0]}
            {"u":"a","when":1700000000.5,"text":"y","vector":[1,0,0]}
            {"u":"a","when":"1700000001","text":"z","vector":[1,0,0]}
            """)
        var mapping = FieldMapping()
        mapping.user = "u"
        mapping.time = "when"
        mapping.timeFormat = .unixSeconds
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 3, metric: .dot)
        let failures = Failures()
        let summary = try await Importer().run(
            ImportSource(path: file, format: .jsonl, defaultUser: nil, mapping: mapping),
            into: DatabaseSink(store: store, embedder: nil), onFailure: failures.record)
        #expect(summary.imported == 2 && summary.failed == 1)
        #expect(
            failures.all == [
                ImportFailure(line: 1, reason: #"invalid_value: 'when' is not unix seconds: "8 May 2023""#)
            ])
        #expect(try store.get(user: "a", id: "t.jsonl:2")?.createdAt == 1_700_000_000_500)
        #expect(try store.get(user: "a", id: "t.jsonl:3")?.createdAt == 1_700_000_001_000)
        mapping.text = "when"
        #expect(throws: ImportError(description: "the field 'when' cannot be both text and created_at")) {
            try ImportSource(path: file, format: .jsonl, defaultUser: nil, mapping: mapping)
        }
        store.close()
    }

    /// The progress fraction is where the answered rows end, never where reading got to.
    @Test func progressFollowsWhatWasStored() async throws {
        let folder = Folder()
        let file = folder.write(
            "p.jsonl", (0..<100).map { #"{"user":"u","text":"t\#($0 % 10)","vector":[1,0,0]}"# }.joined(separator: "\n")
        )
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 3, metric: .dot)
        let seen = Mutex<[Double]>([])
        let doneCounts = Mutex<[Int]>([])
        let summary = try await Importer(batchSize: 10, inFlight: 4).run(
            ImportSource(path: file, format: .jsonl, defaultUser: nil),
            into: DatabaseSink(store: store, embedder: nil), onFailure: { _ in },
            onProgress: { summary in
                seen.withLock { $0.append(summary.fractionRead) }
                doneCounts.withLock { $0.append(summary.imported) }
            })
        #expect(summary.imported == 100 && summary.fractionRead == 1)
        let fractions = seen.withLock { $0 }
        let done = doneCounts.withLock { $0 }
        #expect(fractions.count == 10)
        // Every row is as long as the others, so the fraction is the share stored.
        for (fraction, count) in zip(fractions, done) {
            #expect(abs(fraction - Double(count) / 100) < 0.011, "\(fraction) at \(count) rows")
        }
        store.close()
    }

    /// Batches in flight together are answered in any order: the fraction is the share the
    /// answered ones span, so it still follows what was stored.
    @Test func progressFollowsBatchesAnsweredOutOfOrder() async throws {
        let folder = Folder()
        let file = folder.write(
            "p.jsonl", (0..<40).map { #"{"user":"u","text":"t\#($0 % 10)","vector":[1,0,0]}"# }.joined(separator: "\n"))
        let seen = Mutex<[(fraction: Double, imported: Int)]>([])
        let summary = try await Importer(batchSize: 10, inFlight: 4).run(
            ImportSource(path: file, format: .jsonl, defaultUser: nil), into: FirstBatchLastSink(),
            onFailure: { _ in },
            onProgress: { summary in seen.withLock { $0.append((summary.fractionRead, summary.imported)) } })
        #expect(summary.imported == 40)
        let progress = seen.withLock { $0 }
        #expect(progress.map(\.imported) == [10, 20, 30, 40])
        for step in progress { #expect(abs(step.fraction - Double(step.imported) / 40) < 0.011, "\(step)") }
    }

    @Test func strictStopsAtTheFirstBadRow() async throws {
        let folder = Folder()
        let file = folder.write("memories.jsonl", jsonl)
        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 3, metric: .dot)
        let summary = try await Importer(batchSize: 1, strict: true).run(
            ImportSource(path: file, format: .jsonl, defaultUser: nil), into: DatabaseSink(store: store, embedder: nil),
            onFailure: { _ in })
        #expect(summary.failed == 1)
        #expect(summary.imported == 2)
        store.close()
    }

    /// Writes an .npy file with `header` (padded as NumPy pads it) and `body`.
    func npy(_ folder: Folder, _ name: String, header: String, body: [UInt8] = []) -> String {
        var text = Array(header.utf8)
        while (10 + text.count + 1) % 64 != 0 { text.append(0x20) }
        text.append(0x0A)
        let bytes: [UInt8] =
            [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(text.count & 0xFF), UInt8(text.count >> 8)] + text + body
        let file = folder.path + "/" + name
        _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
        return file
    }

    @Test func hostileFilesAreRefusedWithTheirLine() async throws {
        let folder = Folder()
        for (shape, message) in [
            ("(9223372036854775807, 8)", "shorter than its shape (9223372036854775807, 8)"),
            ("(5, -8)", "shape (5, -8) has a negative or empty side"),
        ] {
            let file = npy(folder, "bad.npy", header: "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }")
            let error = #expect(throws: DataFileError.self) {
                try ImportSource(path: file, format: .npy, defaultUser: "u")
            }
            #expect(error?.description.hasSuffix(message) == true, "\(String(describing: error))")
        }
        // Found by FuzzImport: a ')' before the shape's '(' trapped on a reversed range.
        let reversed = npy(
            folder, "reversed.npy", header: "{'descr': '<f2', 'fortran_order': False, 'sha), pe': (0, 2), }")
        let error = #expect(throws: DataFileError.self) {
            try ImportSource(path: reversed, format: .npy, defaultUser: "u")
        }
        #expect(error?.description.hasSuffix("no shape in the .npy header") == true)
        #expect(throws: DataFileError.self) { try ImportSource(path: folder.path, format: .jsonl, defaultUser: "u") }
        // Found by FuzzImport: a version-2 header cut before its 4-byte length read out of bounds.
        let cut = folder.path + "/cut.npy"
        _ = FileManager.default.createFile(
            atPath: cut, contents: Data([0x93] + Array("NUMPY".utf8) + [0, 0, 0, 0, 0x53]))
        #expect(throws: DataFileError.self) { try ImportSource(path: cut, format: .npy, defaultUser: "u") }

        let integers = npy(
            folder, "int.npy", header: "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }",
            body: [3, 0, 0, 0, 4, 0, 0, 0])
        #expect(try VectorFile(path: integers).row(0) == [3, 4])

        // Latin-1 bytes make the line they are on a failed row, and the read goes on.
        let latin1 = folder.path + "/latin1.jsonl"
        _ = FileManager.default.createFile(
            atPath: latin1,
            contents: Data(
                #"{"user":"u","text":"ok","vector":[1,0]}"#.utf8 + [0x0A] + Array("{\"text\":\"caf".utf8) + [
                    0xE9, 0x22, 0x7D, 0x0A,
                ]))
        let source = try ImportSource(path: latin1, format: .jsonl, defaultUser: nil)
        #expect(source.nextRow().map { (try? $0.memory.get())?.text } == "ok")
        let failed = try #require(source.nextRow())
        #expect(failed.line == 2)
        #expect(
            failed.memory
                == .failure(ImportRowError(reason: "not valid UTF-8 (a file must be UTF-8); skipped")))
        #expect(source.nextRow() == nil)
    }

    @Test func csvWithABOMAndAFieldOverTwoLines() throws {
        let folder = Folder()
        let file = folder.write("bom.csv", "\u{FEFF}user,text,vector\nu,\"multi\nline\",\"[1,0]\"\nu,two,\"[0,1]\"\n")
        let source = try ImportSource(path: file, format: .csv, defaultUser: nil)
        let first = try #require(try source.nextRow()?.memory.get())
        #expect(first.user == "u" && first.text == "multi\nline")
        #expect(try source.nextRow()?.memory.get().text == "two")
        #expect(source.nextRow() == nil)
    }

    @Test func csvWithQuotesAndBase64Vectors() async throws {
        let folder = Folder()
        let vector = Base64.encode([0.5, -1, 2])
        let file = folder.write(
            "memories.csv",
            #"""
            id,user,text,vector,metadata,created_at
            c1,u,"hello, ""world""","[1,2,3]","{""a"":1}",7
            c2,u,plain,\#(vector),,8
            c3,u,too few
            """#)
        let store = try MemoryStore(path: folder.path + "/space.db", metric: .dot)
        let failures = Failures()
        let summary = try await Importer().run(
            ImportSource(path: file, format: .csv, defaultUser: nil), into: DatabaseSink(store: store, embedder: nil),
            onFailure: failures.record)
        #expect(summary.imported == 2)
        #expect(failures.all == [ImportFailure(line: 4, reason: "3 fields, the header has 6")])
        #expect(
            try store.get(user: "u", id: "c1")
                == Memory(
                    id: "c1", user: "u", text: "hello, \"world\"", createdAt: 7, metadata: #"{"a":1}"#,
                    vector: [1, 2, 3]))
        #expect(try store.get(user: "u", id: "c2")?.vector == [0.5, -1, 2])
        store.close()
    }

    @Test func vectorFilesWithTextsOverTheProtocol() async throws {
        let folder = Folder()
        // An .npy of float16 (2 x 3) and an .fvecs of the same rows.
        var npy = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        var header = "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        npy.append(contentsOf: [UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
        npy.append(contentsOf: Array(header.utf8))
        let rows: [[Float]] = [[1, 0.5, -2], [0.25, 4, 1]]
        for value in rows.joined() {
            withUnsafeBytes(of: Float16(value).bitPattern.littleEndian) { npy.append(contentsOf: $0) }
        }
        _ = FileManager.default.createFile(atPath: folder.path + "/base.npy", contents: npy)
        var fvecs = Data()
        for row in rows {
            withUnsafeBytes(of: Int32(3).littleEndian) { fvecs.append(contentsOf: $0) }
            for value in row { withUnsafeBytes(of: value.bitPattern.littleEndian) { fvecs.append(contentsOf: $0) } }
        }
        _ = FileManager.default.createFile(atPath: folder.path + "/base.fvecs", contents: fvecs)
        let texts = folder.write(
            "texts.jsonl", #"{"row":0,"id":"w0","text":"zero"}"# + "\n" + #"{"row":1,"text":"one"}"# + "\n")

        let store = try MemoryStore(path: folder.path + "/space.db", dimension: 3, metric: .dot, model: nil)
        let server = try await ContextStoreServer(
            store: store, configuration: ServerConfiguration(port: 0, threads: 2), logger: Logger(label: "test"))
        let client = try await ContextStoreClient.connect(port: server.port)
        let summary = try await Importer().run(
            ImportSource(path: folder.path + "/base.npy", format: .npy, texts: texts, defaultUser: "u"),
            into: ServerSink(client: client), onFailure: { _ in })
        #expect(summary.imported == 2)
        #expect(
            try await client.get(user: "u", id: "w0", withVector: true)
                == Memory(
                    id: "w0", user: "u", text: "zero", createdAt: try store.get(user: "u", id: "w0")!.createdAt,
                    vector: rows[0])
        )
        #expect(try await client.get(user: "u", id: "base.npy:2", withVector: true).vector == rows[1])

        // The same rows from .fvecs, under its own ids; a rerun of the .npy skips everything.
        let fromFvecs = try await Importer().run(
            ImportSource(path: folder.path + "/base.fvecs", format: .fvecs, defaultUser: "u"),
            into: ServerSink(client: client),
            onFailure: { _ in })
        #expect(fromFvecs.imported == 2)
        #expect(try await client.get(user: "u", id: "base.fvecs:1", withVector: true).vector == rows[0])
        let rerun = try await Importer().run(
            ImportSource(path: folder.path + "/base.npy", format: .npy, texts: texts, defaultUser: "u"),
            into: ServerSink(client: client), onFailure: { _ in })
        #expect(rerun.skipped == 2)
        #expect(rerun.imported == 0)
        await client.close()
        await server.shutdown()
        store.close()
    }

    @Test func guessesTheFormatFromTheExtension() {
        #expect(ImportFormat(path: "a/b.JSONL") == .jsonl)
        #expect(ImportFormat(path: "x.fvecs") == .fvecs)
        #expect(ImportFormat(path: "x.parquet") == nil)
        #expect(CSV.fields(#"a,"b,c",,"d""e""#) == ["a", "b,c", "", "d\"e"])
    }
}

/// A sink that answers the first batch it is given after the others (unless the others take
/// longer than its pause).
final class FirstBatchLastSink: ImportSink {
    let started = Atomic<Int>(0)

    func dimension() async throws -> Int? { 3 }

    func store(_ batch: [NewMemory]) async throws -> ImportSinkOutcome {
        if started.wrappingAdd(1, ordering: .relaxed).oldValue == 0 {
            try await Task.sleep(for: .milliseconds(300))
        }
        return ImportSinkOutcome(stored: batch.count, skipped: 0, conflicts: [])
    }
}
