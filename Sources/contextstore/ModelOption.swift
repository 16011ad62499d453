import ArgumentParser
import Embedder

#if canImport(Glibc)
    import Glibc
#endif

/// How the commands find the embedding model: `--model PATH`, `--model none`, or the folder
/// `scripts/fetch-model` fills.
enum ModelOption {
    /// `data/models/all-MiniLM-L6-v2` of the home folder (`ContextHome`).
    static let defaultFolder = ContextHome.resolve("data/models/all-MiniLM-L6-v2")

    /// The model `option` names; without one, the default folder's when it holds a model.
    /// - Returns: nil for `none`, or when there is no option and no default model.
    /// - Throws: when a named (or present default) model cannot be loaded.
    static func load(_ option: String?) throws -> SentenceEmbedder? {
        let folder: String
        switch option {
        case "none": return nil
        case let path?: folder = path
        case nil:
            guard access(defaultFolder + "/model.safetensors", R_OK) == 0 else { return nil }
            folder = defaultFolder
        }
        let missing = ["model.safetensors", "vocab.txt", "config.json"].filter { access(folder + "/" + $0, R_OK) != 0 }
        guard missing.isEmpty else {
            let what = access(folder, F_OK) == 0 ? "it has no \(missing.joined(separator: ", "))" : "no such folder"
            throw fail(
                "cannot load the embedding model in \(folder): \(what) (scripts/fetch-model fetches all-MiniLM-L6-v2; --model none serves without a model)"
            )
        }
        do {
            return try SentenceEmbedder(folder: folder)
        } catch {
            throw fail("cannot load the embedding model in \(folder): \(error)")
        }
    }
}
