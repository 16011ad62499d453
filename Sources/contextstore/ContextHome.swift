import Foundation

/// Where the commands' default files live (`data/models/...`, `data/tokenizers/...`, the default
/// database): `$CONTEXTSTORE_HOME` when set, else the checkout the executable was built in (the
/// first folder above it that holds `data/`), else the working directory. So a server started
/// from any folder finds the model `scripts/fetch-model` fetched, instead of running without it.
enum ContextHome {
    static let path: String = {
        if let home = ProcessInfo.processInfo.environment["CONTEXTSTORE_HOME"], !home.isEmpty { return home }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var folder = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                ?? executable.path
        ).deletingLastPathComponent()
        while folder.path != "/" {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(
                atPath: folder.appendingPathComponent("data").path, isDirectory: &isFolder),
                isFolder.boolValue
            {
                return folder.path
            }
            folder.deleteLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath
    }()

    /// `relative` inside the home folder.
    static func resolve(_ relative: String) -> String { path + "/" + relative }
}
