/// What a likelihood is told about a data set, to accept or refuse it (the
/// vocabulary Datasets and VAEModel share).
public struct DataDescription: Equatable, Sendable {
    /// The file or folder, for messages.
    public var source: String
    /// K when the values are integer levels 0…K−1 (8-bit images: 256); nil
    /// for real-valued data.
    public var levels: Int?
    /// The smallest and largest value the encoder sees (levels scaled by 1/(K−1)).
    public var range: ClosedRange<Float>
    /// How the values are stored, for messages ("uint8", "float32", "CSV numbers").
    public var storage: String
    /// Whether every value is a whole number (levels are; counts must be).
    public var integral: Bool

    public init(source: String, levels: Int?, range: ClosedRange<Float>, storage: String, integral: Bool? = nil) {
        self.source = source
        self.levels = levels
        self.range = range
        self.storage = storage
        self.integral = integral ?? (levels != nil)
    }
}

/// Which values of a batch a likelihood scores: the encoder's input (levels
/// scaled by 1/(K−1), floats as they are, standardized columns
/// standardized), or the integer levels themselves.
public enum TargetRepresentation: Sendable {
    case scaled
    case levels
}
