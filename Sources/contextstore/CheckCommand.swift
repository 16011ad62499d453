import ArgumentParser
import MemoryStore

/// `contextstore check`: an integrity check of a database file.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a database file's integrity (safe next to a running server).",
        discussion: """
            Runs SQLite's quick_check and checks every embedding's length; for an hnsw space also that \
            every memory has one graph node and every node a memory, that links point at nodes of their \
            layer, and that every node is reachable from the entry point. Prints the counts and each \
            problem; exits with status 1 when there is any.
            """
    )

    @Option(help: "The SQLite database file.") var db: String

    func run() throws {
        let report: CheckReport
        do {
            report = try MemoryStore.check(path: db)
        } catch {
            // Not a usage mistake: say what failed, without the usage text.
            printError("cannot check \(db): \(error)")
            throw ExitCode(64)
        }
        print("\(db): \(report.index) space, \(report.memories) memories, \(report.nodes) graph nodes")
        for problem in report.problems { print("problem: \(problem)") }
        print(report.isSound ? "ok" : "\(report.problems.count) problems")
        if !report.isSound { throw ExitCode(1) }
    }
}
