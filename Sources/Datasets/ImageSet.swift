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
    /// 1 where a value is observed, 0 where it is missing (N·D, row-major);
    /// nil when every value is observed. NaN in float data is missing; a
    /// mask file (`withMask`) can mark any value missing.
    public private(set) var observed: [UInt8]?
    /// This "test set" is the training set itself (a run without a test
    /// set, `--test-fraction 0`): evaluations say so.
    public var isTrainingSet = false
    /// How the values were stored, when `values` does not say ("int64
    /// counts", "interactions"), for messages.
    public var storageName: String?
    /// The samples' own ids (users of an interaction log, cells of a count
    /// matrix), when the data name them.
    public var rowNames: [String]?
    /// The labels' names when they came as text (a label table's categories).
    public var labelNames: [String]?
    /// What the encoder reads of each row besides the values themselves
    /// (`InputNormalization`): applied in `batch(_:as: .scaled)`.
    public var inputNormalization: InputNormalization?

    /// `observed` nil: NaN values are found and marked missing, unless
    /// `scanningForNaN` is false (a selection of a set that has none).
    public init(shape: ImageShape, values: SampleValues, levels: Int? = nil, labels: [Int32]? = nil, source: String = "",
                kind: Kind = .images, observed: [UInt8]? = nil, scanningForNaN: Bool = true) {
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
        precondition(observed == nil || observed!.count == values.count, "one mask entry per value")
        self.observed = observed ?? (scanningForNaN ? Self.missingFromNaN(values) : nil)
    }

    /// The mask of NaN values (missing), or nil when there is none.
    static func missingFromNaN(_ values: SampleValues) -> [UInt8]? {
        // The summary's pass (kept) says whether there is any NaN to mark.
        guard values.element == .float32, values.summary.hasNaN else { return nil }
        var mask: [UInt8]? = nil
        values.forEachChunk { offset, chunk in
            for (i, v) in chunk.enumerated() where v.isNaN {
                if mask == nil { mask = [UInt8](repeating: 1, count: values.count) }
                mask![offset + i] = 0
            }
        }
        return mask
    }

    /// These samples with the values `mask` marks 0 missing as well (N·D
    /// values, 1 observed, 0 missing), the mask coming from `source`.
    public func withMask(_ mask: [UInt8], source maskSource: String) throws -> ImageSet {
        guard mask.count == values.count else {
            throw DatasetError.incompatible(path: maskSource, detail: "holds \(mask.count) mask values; \(source) has "
                                            + "\(count) samples of \(shape.size) values (\(values.count))")
        }
        if let bad = mask.firstIndex(where: { $0 > 1 }) {
            throw DatasetError.incompatible(path: maskSource, detail: "value \(mask[bad]) at index \(bad): a mask holds 1 "
                                            + "(observed) and 0 (missing)")
        }
        var set = self
        set.observed = observed.map { zip($0, mask).map { $0 & $1 } } ?? mask
        if !set.observed!.contains(0) { set.observed = nil }
        return set
    }

    /// The number of missing values.
    public var missingCount: Int { observed.map { $0.reduce(0) { $0 + (1 - Int($1)) } } ?? 0 }

    /// The number of samples none of whose values is observed.
    public var rowsWithoutObservedValues: Int {
        guard let observed else { return 0 }
        let d = shape.size
        return (0..<count).filter { r in !observed[r * d ..< (r + 1) * d].contains(1) }.count
    }

    /// The mask of the samples at `indices`, (b, D): 1 observed, 0 missing;
    /// nil when every value is observed.
    public func mask<Indices: Collection>(_ indices: Indices) -> Tensor? where Indices.Element == Int {
        guard let observed else { return nil }
        let d = shape.size
        return Tensor(shape: [indices.count, d]) { out in
            var row = 0
            for index in indices {
                for j in 0..<d { out[row * d + j] = Float(observed[index * d + j]) }
                row += 1
            }
        }
    }

    public var isImages: Bool { kind == .images }

    /// Column names of a table (nil for images and unnamed vectors).
    public var columnNames: [String]? {
        if case .vectors(let columns) = kind { return columns }
        return nil
    }

    /// 1/(K−1) for levels (bytes: 1/255), nil for real values.
    public var levelScale: Float? { levels.map { 1 / Float($0 - 1) } }

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
                // The encoder's view only: a likelihood of counts scores the counts themselves.
                if representation == .scaled, let inputNormalization { inputNormalization.apply(o, count: d) }
                // Missing values reach the models as 0 (the encoder's fill, and a target the likelihood masks out).
                if let observed { for j in 0..<d where observed[index * d + j] == 0 { o[j] = 0 } }
                row += 1
            }
        }
    }

    /// The same samples with these labels (named `names` when they came as text).
    public func labelled(_ labels: [Int32], names: [String]?) -> ImageSet {
        precondition(labels.count == count, "one label per sample")
        var set = ImageSet(shape: shape, values: values, levels: levels, labels: labels, source: source, kind: kind,
                           observed: observed, scanningForNaN: false)
        carryDescription(to: &set)
        set.rowNames = rowNames
        set.labelNames = names
        return set
    }

    /// What describes the samples besides their values (kept by a selection or relabelling).
    private func carryDescription(to set: inout ImageSet) {
        set.standardization = standardization
        set.isTrainingSet = isTrainingSet
        set.storageName = storageName
        set.inputNormalization = inputNormalization
    }

    /// A new set holding the samples (and labels) at `indices`, in that order.
    public func selecting(_ indices: [Int]) -> ImageSet {
        let d = shape.size
        var set = ImageSet(shape: shape, values: values.selecting(rows: indices, width: d), levels: levels,
                           labels: labels.map { l in indices.map { l[$0] } }, source: source, kind: kind,
                           observed: observed.map { o in indices.flatMap { o[$0 * d ..< ($0 + 1) * d] } },
                           scanningForNaN: false)
        carryDescription(to: &set)
        set.rowNames = rowNames.map { names in indices.map { names[$0] } }
        set.labelNames = labelNames
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
                        storage: storageName ?? (values.element == .float32 && columnNames != nil ? "CSV numbers"
                                                 : values.element.rawValue),
                        integral: levels != nil || isIntegral)
    }

    /// Whether every value (missing ones aside) is a whole number.
    public var isIntegral: Bool { levels != nil || values.isIntegral }
}

/// What the encoder reads of a row of counts (`--input-normalization`):
/// its L2-normalised values (Mult-VAE: x/‖x‖), or log(1 + x) (scVI). The
/// likelihood still scores the counts themselves.
public enum InputNormalization: String, Codable, CaseIterable, Sendable {
    case l2
    case log1p

    func apply(_ row: UnsafeMutablePointer<Float>, count d: Int) {
        switch self {
        case .l2:
            var squares = 0.0
            for j in 0..<d { squares += Double(row[j]) * Double(row[j]) }
            // An empty row stays 0 (torch.nn.functional.normalize divides by max(‖x‖, 1e-12)).
            let scale = 1 / Swift.max(squares.squareRoot(), 1e-12)
            for j in 0..<d { row[j] = Float(Double(row[j]) * scale) }
        case .log1p:
            for j in 0..<d { row[j] = Float(Foundation.log1p(Double(row[j]))) }
        }
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
            for j in 0..<d where !values[j].isNaN && set.observed?[i * d + j] != 0 {
                sum[j] += Double(values[j])
                count[j] += 1
            }
        }
        let mean = (0..<d).map { count[$0] > 0 ? sum[$0] / count[$0] : 0 }
        var squares = [Double](repeating: 0, count: d)
        for i in 0..<set.count {
            values.withUnsafeMutableBufferPointer { set.values.convert(i * d, d, into: $0.baseAddress!, scale: scale) }
            for j in 0..<d where !values[j].isNaN && set.observed?[i * d + j] != 0 {
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

    /// Checks that every value is finite or missing (NaN marks a missing
    /// value; the mask says which). Errors name the file, the sample and the
    /// element (a table: its line and column).
    public func validateFinite() throws {
        // Nothing to find when the summary's pass saw neither NaN nor infinity.
        guard values.element == .float32, values.summary.hasNaN || values.summary.hasInfinite else { return }
        let d = shape.size
        var found: (Int, Float)? = nil
        values.forEachChunk { offset, chunk in
            guard found == nil else { return }
            for (i, v) in chunk.enumerated() where !v.isFinite && !(v.isNaN && observed?[offset + i] == 0) {
                found = (offset + i, v)
                return
            }
        }
        guard let (index, value) = found else { return }
        let (sample, element) = (index / d, index % d)
        throw DatasetError.incompatible(
            path: source, detail: "value \(value) at sample \(sample), element \(element)"
                + (columnNames.map { " (column \($0[element]))" } ?? "") + " is not finite")
    }
}
