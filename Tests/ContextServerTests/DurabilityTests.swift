import ContextClient
import ContextModel
import ContextProtocol
import Foundation
import MemoryStore
import Synchronization
import Testing

/// The real `contextstore serve` process, started and stopped (or killed) by a test.
final class ServerProcess {
    let process = Process()
    let port: Int
    /// Where the server's log (its standard error) goes, next to its database.
    let logPath: String

    /// - Parameter unprivileged: run as the user `nobody` when the tests run as root (as CI
    ///   does), from a copy of the executable that user can reach; as the current user otherwise.
    /// - Parameter descriptorLimit: RLIMIT_NOFILE for the server (through `prlimit`).
    init(database: String, arguments: [String] = [], unprivileged: Bool = false, descriptorLimit: Int? = nil) throws {
        let serve = ["serve", "--db", database, "--port", "0", "--http-port", "none", "--model", "none"] + arguments
        if let descriptorLimit {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = ["--nofile=\(descriptorLimit):\(descriptorLimit)", contextstoreExecutable()] + serve
        } else if unprivileged && getuid() == 0 {
            let copy = URL(fileURLWithPath: database).deletingLastPathComponent().appendingPathComponent("contextstore")
            try FileManager.default.copyItem(atPath: contextstoreExecutable(), toPath: copy.path)
            chmod(copy.path, 0o755)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", copy.path] + serve
        } else {
            process.executableURL = URL(fileURLWithPath: contextstoreExecutable())
            process.arguments = serve
        }
        let output = Pipe()
        process.standardOutput = output
        logPath = URL(fileURLWithPath: database).deletingLastPathComponent().appendingPathComponent("server.log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
        // The server prints "listening on HOST:PORT" once it accepts connections.
        var line = [UInt8]()
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            guard let first = byte.first else { throw POSIXError(.EPIPE) }
            if first == 0x0A { break }
            line.append(first)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("listening on "), let port = text.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw POSIXError(.EPROTO)
        }
        self.port = port
    }

    /// What the server has logged so far, for a test's failure to show.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// CPU time (user and system) the server process has used, in seconds.
    var cpuSeconds: Double {
        let stat = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8)) ?? ""
        // Fields after the command name, which is in parentheses and may hold spaces.
        guard let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The server process's resident memory, in bytes.
    var residentBytes: Int {
        let text = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/statm", encoding: .utf8)) ?? ""
        let fields = text.split(separator: " ")
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// The user id the server process runs as.
    var uid: UInt32? {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return nil }
        return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { UInt32($0) }
    }

    func signal(_ number: Int32) {
        kill(process.processIdentifier, number)
        process.waitUntilExit()
    }

    /// A server a test did not stop is killed, so none outlives the test run.
    deinit {
        if process.isRunning { signal(SIGKILL) }
    }
}

@Suite(.serialized) struct DurabilityTests {
    @Test func memoriesSurviveARestart() async throws {
        let folder = TemporaryFolder()
        let database = folder.path + "/space.db"
        var server = try ServerProcess(database: database, arguments: ["--dim", "3", "--metric", "l2"])
        var client = try await ContextStoreClient.connect(port: server.port)
        try await client.addBatch(
            (0..<100).map {
                NewMemory(
                    id: "m\($0)", user: "u\($0 % 4)", text: "text \($0)", createdAt: Int64($0),
                    vector: [Float($0), 0, 1])
            })
        try await client.delete(user: "u1", id: "m5")
        await client.close()
        server.signal(SIGTERM)
        #expect(server.process.terminationStatus == 0)

        server = try ServerProcess(database: database)
        client = try await ContextStoreClient.connect(port: server.port)
        let hello = try await client.hello()
        #expect(hello.memories == 99)
        #expect(hello.dimension == 3)
        #expect(hello.metric == .l2)
        #expect(
            try await client.get(user: "u2", id: "m42", withVector: true)
                == Memory(id: "m42", user: "u2", text: "text 42", createdAt: 42, vector: [42, 0, 1]))
        let hits = try await client.search(SearchRequest(user: "u1", query: .vector([5, 0, 1]), k: 2))
        #expect(hits.map(\.memory.id) == ["m1", "m9"])
        await client.close()
        server.signal(SIGINT)
        #expect(server.process.terminationStatus == 0)
    }

    /// For an hnsw space the graph must also pass `check`: it is written in the same transactions.
    @Test(arguments: ["flat", "hnsw"])
    func acknowledgedWritesSurviveSIGKILL(index: String) async throws {
        let folder = TemporaryFolder()
        let database = folder.path + "/space.db"
        let server = try ServerProcess(database: database, arguments: ["--dim", "8", "--index", index])
        let acknowledged = Acknowledged()
        let port = server.port
        let pid = server.process.processIdentifier

        // Four writers stream adds until the server dies under them.
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    guard let client = try? await ContextStoreClient.connect(port: port) else { return }
                    for i in 0..<100_000 {
                        let id = "w\(writer)-\(i)"
                        let vector = (0..<8).map { Float($0 + i) }
                        do {
                            if i % 11 == 10 {
                                // Replace an earlier memory: in a graph, its node is rebuilt.
                                try await client.add(
                                    NewMemory(
                                        id: "w\(writer)-\(i - 1)", user: "u\(writer)", text: "again",
                                        vector: vector.reversed()))
                            } else if i % 5 == 0 {
                                let ids = try await client.addBatch([
                                    NewMemory(id: id, user: "u", text: "t", vector: vector),
                                    NewMemory(id: id + "b", user: "u", text: "t", vector: vector),
                                ])
                                acknowledged.ids.withLock { $0 += ids.map { MemoryRef(user: "u", id: $0) } }
                            } else {
                                try await client.add(NewMemory(id: id, user: "u\(writer)", text: "t", vector: vector))
                                acknowledged.ids.withLock { $0.append(MemoryRef(user: "u\(writer)", id: id)) }
                            }
                        } catch {
                            return
                        }
                    }
                }
            }
            group.addTask {
                // Let the stream run, then kill without warning.
                while acknowledged.ids.withLock({ $0.count }) < 300 { try? await Task.sleep(for: .milliseconds(5)) }
                kill(pid, SIGKILL)
            }
        }
        server.process.waitUntilExit()
        #expect(server.process.terminationReason == .uncaughtSignal)
        let ids = acknowledged.ids.withLock { $0 }
        #expect(ids.count >= 300)

        let report = try MemoryStore.check(path: database)
        #expect(report.problems == [])
        #expect(report.index == index)
        #expect(report.nodes == (index == "hnsw" ? report.memories : 0))
        let store = try MemoryStore(path: database)
        for memory in ids {
            #expect(try store.get(user: memory.user, id: memory.id) != nil, "acknowledged \(memory) was lost")
        }
        store.close()
    }
}

/// The ids the server has acknowledged, shared by the writer tasks.
final class Acknowledged: Sendable {
    let ids = Mutex<[MemoryRef]>([])
}
