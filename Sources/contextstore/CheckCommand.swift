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
            layer, and that every node is reachable from the entry point. Prints the counts, the index of \
            the last write applied and the space's digest, and each problem; exits with status 1 when \
            there is any. With --against, also that the other file applied the same writes to the same \
            rows (a replica, or a replay of the same commands).
            """
    )

    @Option(help: "The SQLite database file.") var db: String
    @Option(help: "Another space's file that must hold the same rows (the same digest and applied index).")
    var against: String?

    func run() throws {
        var report = try check(db)
        if let against {
            let other = try check(against)
            report.problems += other.problems.map { "\(against): \($0)" }
            if other.appliedIndex != report.appliedIndex || other.digest != report.digest {
                report.problems.append(
                    "\(against) differs: applied index \(other.appliedIndex) against \(report.appliedIndex), "
                        + "digest \(other.digest) against \(report.digest)")
            }
        }
        for problem in report.problems { print("problem: \(problem)") }
        print(report.isSound ? "ok" : "\(report.problems.count) problems")
        if !report.isSound { throw ExitCode(1) }
    }

    private func check(_ path: String) throws -> CheckReport {
        let report: CheckReport
        do {
            report = try MemoryStore.check(path: path)
        } catch {
            // Not a usage mistake: say what failed, without the usage text.
            printError("cannot check \(path): \(error)")
            throw ExitCode(64)
        }
        print("\(path): \(report.index) space, \(report.memories) memories, \(report.nodes) graph nodes")
        print("\(path): applied index \(report.appliedIndex), digest \(report.digest)")
        if !report.keywordSegments.isEmpty {
            print(
                "\(path): keyword index of \(report.keywordSegments.reduce(0, +)) segments in "
                    + "\(report.keywordSegments.count) levels")
        }
        return report
    }
}
