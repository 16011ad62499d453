import ArgumentParser
import ContextServer
import PromptBuilder

#if canImport(Glibc)
    import Glibc
#endif

/// How `serve` builds prompts: `--tokenizer` (the cl100k_base rank file, or `estimate`) and
/// `--templates` (a folder of NAME.mustache files).
struct PromptOptions: ParsableArguments {
    static let defaultRankFile = ContextHome.resolve(BytePairEncoder.defaultRankFile)

    @Option(
        help: """
            How prompts count tokens: a cl100k_base rank file, or 'estimate' (a token per 4 bytes). \
            Default: \(PromptOptions.defaultRankFile) when present (scripts/fetch-model fetches it).
            """)
    var tokenizer: String?

    @Option(help: "A folder of prompt templates, NAME.mustache each; a request names one by NAME.")
    var templates: String?

    @Flag(
        help: """
            Let a prompt request carry a template's text (at most 16 KiB, its render at most 8 MiB); \
            off: requests name the standard template or one of --templates.
            """)
    var allowRequestTemplates = false

    /// The settings, and a line for the log when the counter is an estimate nobody asked for.
    func settings() throws -> (PromptSettings, note: String?) {
        let (counter, note) = try Self.counter(tokenizer)
        var templates: [String: PromptTemplate] = [:]
        if let folder = self.templates {
            do {
                templates = try PromptTemplate.load(directory: folder)
            } catch {
                throw fail("--templates: \(error)")
            }
        }
        return (
            PromptSettings(counter: counter, templates: templates, allowRequestTemplates: allowRequestTemplates), note
        )
    }

    /// The counter `--tokenizer` names: the rank file at a path, `estimate`, or (nil) the default
    /// rank file when it is there, else an estimate with a line for the log saying so.
    static func counter(_ tokenizer: String?) throws -> (TokenCounter, note: String?) {
        switch tokenizer {
        case "estimate":
            (.estimate, nil)
        case let path?:
            (.cl100k(try encoder(path)), nil)
        case nil where access(defaultRankFile, R_OK) == 0:
            (.cl100k(try encoder(defaultRankFile)), nil)
        case nil:
            (
                .estimate,
                "no cl100k_base rank file at \(defaultRankFile) (scripts/fetch-model fetches it): prompts count tokens by estimate"
            )
        }
    }

    private static func encoder(_ path: String) throws -> BytePairEncoder {
        do {
            return try BytePairEncoder(rankFile: path)
        } catch {
            throw fail("--tokenizer: cannot load the rank file \(path): \(error)")
        }
    }
}
