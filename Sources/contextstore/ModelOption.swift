import ArgumentParser
import Embedder

#if canImport(Glibc)
    import Glibc
#endif

/// How the commands find the embedding model: `--model PATH`, `--model none`, or the folder
/// `scripts/fetch-model` fills.
enum ModelOption {
    static let defaultFolder = "data/models/all-MiniLM-L6-v2"

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
        do {
            return try SentenceEmbedder(folder: folder)
        } catch {
            throw ValidationError("cannot load the embedding model in \(folder): \(error)")
        }
    }
}
