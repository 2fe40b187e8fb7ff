// Errors that name the settings a user can change. The library words a setting ("batch size"),
// a front end names its own control for it (the CLI: "--batch-size"), so a message such as
// "this run needs 9.1 GiB …; try \(.batchSize) 16" reads right in both.

/// A run setting an error message can point at. Each module declares its own as static members
/// (Backend: device, precision; Train: batch size, max length, …).
public struct Setting: Hashable, Sendable, CustomStringConvertible {
    /// How the library words it: "max length".
    public let words: String
    public init(_ words: String) { self.words = words }
    public var description: String { words }

    public static let device = Setting("device")
    public static let precision = Setting("precision")
    public static let batchSize = Setting("batch size")
    public static let maxLength = Setting("max length")
}

/// Text with settings in it: "\(Setting.maxLength) 512 exceeds …". `text` words them as the
/// library does; `rendered(_:)` lets a front end name them its own way.
public struct SettingText: Sendable, CustomStringConvertible, ExpressibleByStringInterpolation {
    public enum Part: Sendable { case text(String), setting(Setting) }
    public private(set) var parts: [Part]

    public init(stringLiteral value: String) { parts = [.text(value)] }
    public init(stringInterpolation: Interpolation) { parts = stringInterpolation.parts }
    public init(parts: [Part]) { self.parts = parts }

    public struct Interpolation: StringInterpolationProtocol {
        var parts: [Part] = []
        public init(literalCapacity: Int, interpolationCount: Int) {}
        public mutating func appendLiteral(_ literal: String) { parts.append(.text(literal)) }
        public mutating func appendInterpolation(_ setting: Setting) { parts.append(.setting(setting)) }
        public mutating func appendInterpolation<T>(_ value: T) { parts.append(.text("\(value)")) }
    }

    /// The text with each setting named by `name`.
    public func rendered(_ name: (Setting) -> String) -> String {
        parts.map { part -> String in
            switch part {
            case .text(let text): return text
            case .setting(let setting): return name(setting)
            }
        }.joined()
    }

    /// In the library's words.
    public var text: String { rendered(\.words) }
    public var description: String { text }

    public static func + (l: SettingText, r: SettingText) -> SettingText { SettingText(parts: l.parts + r.parts) }
}

/// An error whose message points at settings to change.
public protocol SettingsError: Error, CustomStringConvertible {
    var message: SettingText { get }
}

public extension SettingsError {
    var description: String { message.text }
}

/// A setting whose value cannot work (a precision the device lacks, a student wider than its teacher).
public struct InvalidSetting: SettingsError, Sendable {
    public let message: SettingText
    public init(_ message: SettingText) { self.message = message }
}
