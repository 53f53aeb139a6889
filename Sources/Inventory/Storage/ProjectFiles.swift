import Foundation

/// Locates the service's data folders (`lua/`, `migrations/`, `openapi/`) and, for tests, the repository's own.
///
/// In this order: the folder an environment variable names; beside an installed binary, `<prefix>/bin/inventoryd`
/// with `<prefix>/share/inventoryd/<name>` (`scripts/install.sh`); and last the folder of that name at the top of
/// the repository the binary was built from (a development build).
public enum ProjectFiles {
    /// The folder `name` (see above).
    public static func directory(_ name: String, environmentVariable: String) -> String {
        if let configured = ProcessInfo.processInfo.environment[environmentVariable], !configured.isEmpty {
            return configured
        }
        if let installed = installedDirectory(name) { return installed }
        return repositoryDirectory(name)
    }

    /// `name` in the install layout around the running executable, if it is there.
    static func installedDirectory(_ name: String) -> String? {
        guard let executable = executableDirectory() else { return nil }
        let candidates = [
            executable.deletingLastPathComponent().appendingPathComponent("share/inventoryd/\(name)", isDirectory: true)
        ]
        var isDirectory: ObjCBool = false
        for candidate in candidates where FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return candidate.standardizedFileURL.path }
        }
        return nil
    }

    /// The folder of the running executable (symbolic links resolved).
    static func executableDirectory() -> URL? {
        let link = URL(fileURLWithPath: "/proc/self/exe")
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: link.path)).map {
            URL(fileURLWithPath: $0)
        } ?? Bundle.main.executableURL
        return resolved?.resolvingSymlinksInPath().deletingLastPathComponent()
    }

    /// `name` at the top of this repository, found from this source file's compile-time path.
    public static func repositoryDirectory(_ name: String) -> String {
        // <repository>/Sources/Inventory/Storage/ProjectFiles.swift: the file, then three folders up.
        var repository = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 {
            repository.deleteLastPathComponent()
        }
        return repository.appendingPathComponent(name, isDirectory: true).path
    }
}
