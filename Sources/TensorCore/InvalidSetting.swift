/// A configuration value that breaks a rule of the component that owns it.
/// `field` is the value's key in config.json ("epochs", "kl.beta",
/// "architecture.latent_size", "data.channels", …): the command line maps it
/// to its option, so a rule is written once, in its component, and worded
/// for either audience.
public struct InvalidSetting: Error, CustomStringConvertible, Equatable, Sendable {
    public let field: String
    /// What is wrong: "must be at least 1 (got 0)".
    public let detail: String

    public init(_ field: String, _ detail: String) {
        self.field = field
        self.detail = detail
    }

    public var description: String { "\(field) \(detail)" }

    /// The same error for a field inside `parent` ("kl" + "beta" → "kl.beta").
    public func inside(_ parent: String) -> InvalidSetting { InvalidSetting(parent + "." + field, detail) }

    /// Checks that `value` lies in `range`.
    public static func check<T: Comparable>(_ field: String, _ value: T, in range: ClosedRange<T>) throws {
        if value < range.lowerBound { throw InvalidSetting(field, "must be at least \(range.lowerBound) (got \(value))") }
        if value > range.upperBound { throw InvalidSetting(field, "must be at most \(range.upperBound) (got \(value))") }
    }

    /// Checks that `value` is at least `minimum`.
    public static func check<T: Comparable>(_ field: String, _ value: T, atLeast minimum: T) throws {
        guard value >= minimum else { throw InvalidSetting(field, "must be at least \(minimum) (got \(value))") }
    }

    /// Checks a rule, with the words of its failure.
    public static func require(_ ok: Bool, _ field: String, _ detail: @autoclosure () -> String) throws {
        if !ok { throw InvalidSetting(field, detail()) }
    }
}
