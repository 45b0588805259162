import Foundation
import TensorCore

/// A data set held in memory: N samples of one shape (images C×H×W, or
/// table rows 1×1×D), their values in the type they were stored in (see
/// `SampleValues`), optional integer labels, and what a model needs to know
/// of the values (their levels, whether they are images).
public struct ImageSet: Sendable {
    /// Images (pictures can be drawn), or vectors such as table rows.
    public enum Kind: Equatable, Sendable {
        case images
        /// Rows of D values; `columns` names them when the source does (a CSV header).
        case vectors(columns: [String]?)
    }

    public let shape: ImageShape
    public let count: Int
    public let values: SampleValues
    /// K when the values are integer levels 0…K−1 (bytes: 256 unless the
    /// source says otherwise); nil for real values.
    public let levels: Int?
    public let labels: [Int32]?
    /// The file the samples came from (for messages).
    public let source: String
    public let kind: Kind
    /// Per-column standardization of the values the encoder sees (`--standardize`).
    public var standardization: Standardization?

    public init(shape: ImageShape, values: SampleValues, levels: Int? = nil, labels: [Int32]? = nil, source: String = "",
                kind: Kind = .images) {
        precondition(shape.size > 0 && values.count % shape.size == 0, "values do not divide into \(shape) samples")
        precondition(levels == nil || values.element.isInteger, "levels need integer values")
        self.shape = shape
        self.count = values.count / shape.size
        self.values = values
        self.levels = levels ?? (values.element == .uint8 ? 256 : nil)
        precondition(labels == nil || labels!.count == count, "one label per sample")
        self.labels = labels
        self.source = source
        self.kind = kind
    }

    public var isImages: Bool { kind == .images }

    /// Column names of a table (nil for images and unnamed vectors).
    public var columnNames: [String]? {
        if case .vectors(let columns) = kind { return columns }
        return nil
    }

    /// 1/(K−1) for levels (bytes: 1/255), nil for real values.
    var levelScale: Float? { levels.map { 1 / Float($0 - 1) } }

    /// The samples at `indices` as a (b, D) tensor: the encoder's view
    /// (`.scaled`: levels times 1/(K−1), floats as they are, then the
    /// standardization if any) or the integer levels themselves (`.levels`).
    public func batch<Indices: Collection>(_ indices: Indices, as representation: TargetRepresentation = .scaled) -> Tensor
        where Indices.Element == Int
    {
        let d = shape.size
        let scale = representation == .scaled ? levelScale : nil
        let standardization = representation == .scaled ? self.standardization : nil
        return Tensor(shape: [indices.count, d]) { out in
            var row = 0
            for index in indices {
                let o = out.baseAddress! + row * d
                values.convert(index * d, d, into: o, scale: scale)
                if let standardization { standardization.apply(o, count: d) }
                row += 1
            }
        }
    }

    /// A new set holding the samples (and labels) at `indices`, in that order.
    public func selecting(_ indices: [Int]) -> ImageSet {
        var set = ImageSet(shape: shape, values: values.selecting(rows: indices, width: shape.size), levels: levels,
                           labels: labels.map { l in indices.map { l[$0] } }, source: source, kind: kind)
        set.standardization = standardization
        return set
    }

    /// Smallest and largest value the encoder sees before standardization
    /// (levels scaled by 1/(K−1)); NaN (missing values) ignored.
    public var valueRange: ClosedRange<Float> {
        guard let range = values.range else { return 0...0 }
        guard let scale = levelScale else { return range }
        return range.lowerBound * scale ... range.upperBound * scale
    }

    /// What a likelihood is told about these values.
    public var description: DataDescription {
        DataDescription(source: source, levels: levels, range: valueRange,
                        storage: values.element == .float32 && columnNames != nil ? "CSV numbers" : values.element.rawValue)
    }
}

/// Per-column standardization (`--standardize`): each column minus its
/// training-set mean, divided by its standard deviation (NumPy's `std`,
/// ddof 0, as scikit-learn's StandardScaler; a constant column is divided
/// by 1). Stored in the run's configuration, so that outputs can be
/// written back in the original units.
public struct Standardization: Codable, Equatable, Sendable {
    public var mean: [Double]
    public var standardDeviation: [Double]

    public init(mean: [Double], standardDeviation: [Double]) {
        self.mean = mean
        self.standardDeviation = standardDeviation
    }

    /// The statistics of each of the D columns of `set` (levels scaled,
    /// missing values left out), in Double, in row order.
    public init(fitting set: ImageSet) {
        let d = set.shape.size
        var sum = [Double](repeating: 0, count: d), count = sum
        var values = [Float](repeating: 0, count: d)
        let scale = set.levelScale
        for i in 0..<set.count {
            values.withUnsafeMutableBufferPointer { set.values.convert(i * d, d, into: $0.baseAddress!, scale: scale) }
            for j in 0..<d where !values[j].isNaN {
                sum[j] += Double(values[j])
                count[j] += 1
            }
        }
        let mean = (0..<d).map { count[$0] > 0 ? sum[$0] / count[$0] : 0 }
        var squares = [Double](repeating: 0, count: d)
        for i in 0..<set.count {
            values.withUnsafeMutableBufferPointer { set.values.convert(i * d, d, into: $0.baseAddress!, scale: scale) }
            for j in 0..<d where !values[j].isNaN {
                let r = Double(values[j]) - mean[j]
                squares[j] += r * r
            }
        }
        self.init(mean: mean, standardDeviation: (0..<d).map { j in
            let sd = count[j] > 0 ? (squares[j] / count[j]).squareRoot() : 0
            return sd > 0 && sd.isFinite ? sd : 1
        })
    }

    /// Standardizes one row of values in place.
    func apply(_ row: UnsafeMutablePointer<Float>, count d: Int) {
        for j in 0..<d { row[j] = Float((Double(row[j]) - mean[j]) / standardDeviation[j]) }
    }

    /// Original units from standardized values, (N, D) row-major.
    public func restore(_ values: [Float]) -> [Double] {
        let d = mean.count
        return values.enumerated().map { i, v in Double(v) * standardDeviation[i % d] + mean[i % d] }
    }
}

extension ImageSet {
    /// Splits off a seeded random `fraction` of the samples as a test set:
    /// (training part, held-out part), each keeping its order.
    public func holdingOut(fraction: Double, seed: UInt64) -> (train: ImageSet, test: ImageSet) {
        let (kept, held) = Self.holdOut(count: count, fraction: fraction, seed: seed)
        return (selecting(kept), selecting(held))
    }

    /// The indices a seeded hold-out of `fraction` of `count` items keeps
    /// and holds out, each in order: at least one of each.
    public static func holdOut(count: Int, fraction: Double, seed: UInt64) -> (kept: [Int], held: [Int]) {
        let testCount = max(1, min(count - 1, Int((fraction * Double(count)).rounded())))
        let permutation = RandomStream(seed: seed, domain: .dataPermutation, 1).permutation(count)
        return (Array(permutation[testCount...]).sorted(), Array(permutation[0..<testCount]).sorted())
    }

    /// Checks that every value is finite (NaN marks a missing value, which
    /// the models do not take yet). Errors name the file, the sample and
    /// the element (a table: its line and column).
    public func validateFinite() throws {
        guard let (index, value) = values.firstNonFinite() else { return }
        let (sample, element) = (index / shape.size, index % shape.size)
        if value.isNaN {
            throw DatasetError.missingValues(path: source, sample: sample, element: element, column: columnNames?[element])
        }
        throw DatasetError.incompatible(
            path: source, detail: "value \(value) at sample \(sample), element \(element) is not finite")
    }
}
