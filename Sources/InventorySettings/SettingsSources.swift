import Foundation

/// Where settings come from besides the process environment, under the same `INVENTORY_*` names and checks:
/// - `INVENTORY_CONFIG_FILE`: a file of `NAME=VALUE` lines (`#` comments, blank lines, optional quotes: the format
///   of systemd's EnvironmentFile and of `.env` files), or a JSON object of names to strings, numbers or booleans;
/// - `INVENTORY_SECRETS_DIR`: a folder with one file per setting, named after it, holding its value (how container
///   platforms hand out secrets; a trailing newline is dropped).
/// The environment wins over the secrets folder, which wins over the file: a deployment can keep the file in its
/// image and override one setting where it runs.
public enum SettingsSources {
    /// The settings of every source, merged; throws naming the source that cannot be read.
    public static func merged(_ environment: [String: String]) throws -> [String: String] {
        var settings: [String: String] = [:]
        if let path = environment["INVENTORY_CONFIG_FILE"], !path.isEmpty {
            settings.merge(try file(path), uniquingKeysWith: { _, new in new })
        }
        if let path = environment["INVENTORY_SECRETS_DIR"], !path.isEmpty {
            settings.merge(try secrets(path), uniquingKeysWith: { _, new in new })
        }
        settings.merge(environment, uniquingKeysWith: { _, new in new })
        return settings
    }

    static func file(_ path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(description: "INVENTORY_CONFIG_FILE=\(path) cannot be read")
        }
        if text.drop(while: \.isWhitespace).first == "{" {
            do {
                return try JSONDecoder().decode([String: Scalar].self, from: data).mapValues(\.text)
            } catch {
                throw ConfigurationError(
                    description: "INVENTORY_CONFIG_FILE=\(path) is not a JSON object of strings, numbers and booleans"
                )
            }
        }
        var settings: [String: String] = [:]
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw ConfigurationError(description: "INVENTORY_CONFIG_FILE=\(path): line \(index + 1) is not NAME=VALUE")
            }
            let name = line[..<equals].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            settings[name] = value
        }
        return settings
    }

    /// A JSON value a setting may have, as the text the environment would hold.
    struct Scalar: Decodable {
        let text: String

        init(from decoder: any Decoder) throws {
            let value = try decoder.singleValueContainer()
            if let flag = try? value.decode(Bool.self) {
                text = flag ? "on" : "off"
            } else if let number = try? value.decode(Int64.self) {
                text = String(number)
            } else {
                text = try value.decode(String.self)
            }
        }
    }

    static func secrets(_ path: String) throws -> [String: String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else {
            throw ConfigurationError(description: "INVENTORY_SECRETS_DIR=\(path) cannot be read")
        }
        var settings: [String: String] = [:]
        for name in names where name.hasPrefix("INVENTORY_") {
            let file = (path as NSString).appendingPathComponent(name)
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ConfigurationError(description: "INVENTORY_SECRETS_DIR: \(name) cannot be read")
            }
            settings[name] = text.hasSuffix("\n") ? String(text.dropLast()) : text
        }
        return settings
    }
}
