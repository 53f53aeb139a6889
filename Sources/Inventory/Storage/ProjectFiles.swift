import Foundation

/// Locates the repository's top-level data folders (`migrations/`, `lua/`) for tests and the development binary.
public enum ProjectFiles {
    /// The folder `name`: the value of `environmentVariable` when set (how a deployed binary, which has no source
    /// tree, is pointed at its files), otherwise the folder of that name at the top of this repository, found
    /// from this source file's compile-time path.
    public static func directory(_ name: String, environmentVariable: String) -> String {
        if let configured = ProcessInfo.processInfo.environment[environmentVariable], !configured.isEmpty {
            return configured
        }
        // <repository>/Sources/Inventory/Storage/ProjectFiles.swift: the file, then three folders up.
        var repository = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 {
            repository.deleteLastPathComponent()
        }
        return repository.appendingPathComponent(name, isDirectory: true).path
    }
}
