import ArgumentParser
import ContextServer

/// `contextstore spec`: the protocol's operations as data.
struct SpecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spec",
        abstract: "Print the protocol's operations as JSON: fields, ranges, defaults, access, cost, errors.",
        discussion: """
            Per op: its fields (kind, required, range, choices, default, the code of a value out of \
            range), the access a key needs and the users it names, where it runs, its cost against a \
            key's rate, whether its answers are cached, its error codes and its answer's fields. With \
            --markdown, the reference tables of docs/PROTOCOL.md.
            """
    )

    @Flag(help: "Print PROTOCOL.md's reference tables instead of JSON.") var markdown = false

    func run() {
        print(markdown ? OperationSpec.markdown() : OperationSpec.json(), terminator: markdown ? "" : "\n")
    }
}
