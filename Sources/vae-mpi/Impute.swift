import ArgumentParser
import Artifacts
import Collectives
import Datasets
import Foundation
import TensorCore
import Training
import VAEModel

extension ImputationMethod: ExpressibleByArgument {}

/// The options `impute` and `inpaint` share: the method and its sizes.
struct ImputationOptions: ParsableArguments {
    @Option(name: OptionName.method.name, help: ArgumentHelp(
        "importance: self-normalised importance sampling of E[x_miss | x_obs] (MIWAE); mwg: Metropolis-within-Gibbs chains, exact for p(x_miss | x_obs); pseudo-gibbs: the same chains accepting every move (Rezende et al. 2014).",
        valueName: ImputationMethod.allCases.map(\.rawValue).joined(separator: "|")))
    var method: ImputationMethod = .importance

    @Option(name: OptionName.samples.name, help: ArgumentHelp("Importance draws L per sample (importance).", valueName: "L"))
    var samples: Int = 1000

    @Option(name: OptionName.iterations.name, help: ArgumentHelp("Iterations T of each chain (mwg, pseudo-gibbs).", valueName: "T"))
    var iterations: Int = 200

    @Option(name: OptionName.burnIn.name, help: ArgumentHelp(
        "Iterations left out of the chains' average (default: T/2).", valueName: "n"))
    var burnIn: Int?

    @Option(name: OptionName.multiple.name, help: ArgumentHelp(
        "Also write M imputations per sample: sampling-importance-resampling (importance) or M chains' last states (mwg, pseudo-gibbs).",
        valueName: "M"))
    var multiple: Int = 0

    @Option(name: OptionName.seed.name, help: "Seed of the imputation's random numbers (default: the checkpoint's seed).")
    var seed: UInt64?

    func validate() throws {
        try require(samples, atLeast: 1, .samples)
        try require(iterations, atLeast: 1, .iterations)
        try require(burnIn, atLeast: 0, .burnIn)
        try require(multiple, atLeast: 0, .multiple)
        if let burnIn, burnIn >= iterations {
            throw invalid(.burnIn, "(\(burnIn)) must be below \(OptionName.iterations) (\(iterations))")
        }
        if method == .importance && burnIn != nil { throw invalid(.burnIn, "applies to the chains (mwg, pseudo-gibbs)") }
        if samples > 1_000_000 { throw invalid(.samples, "must be at most 1000000 (got \(samples))") }
        if multiple > 10_000 { throw invalid(.multiple, "must be at most 10000 (got \(multiple))") }
    }

    func settings(seed defaultSeed: UInt64) -> ImputationSettings {
        var s = ImputationSettings()
        s.method = method
        s.samples = samples
        s.iterations = iterations
        s.burnIn = burnIn
        s.multiple = multiple
        s.seed = seed ?? defaultSeed
        return s
    }

    var summary: String {
        switch method {
        case .importance: return "importance sampling, L = \(samples)" + (multiple > 0 ? ", \(multiple) imputations by resampling" : "")
        case .mwg, .pseudoGibbs:
            return "\(method == .mwg ? "Metropolis-within-Gibbs" : "pseudo-Gibbs"), \(max(multiple, 1)) chain(s) of \(iterations) iterations"
                + " (the first \(burnIn ?? iterations / 2) left out of the average)"
        }
    }
}

/// Values of a set in its original units from the encoder's scale: a
/// standardization undone, levels scaled back (`ImageSet.levelScale`).
func originalUnits(_ values: [Float], of set: ImageSet) -> [Double] {
    if let s = set.standardization { return s.restore(values) }
    if let scale = set.levelScale { return values.map { Double($0) / Double(scale) } }
    return values.map(Double.init)
}

/// The values of a set as stored (uint8 levels as 0…255, floats as read), in Double.
func storedValues(_ set: ImageSet) -> [Double] {
    var out = [Double](repeating: 0, count: set.values.count)
    set.values.forEachChunk { offset, chunk in for (i, v) in chunk.enumerated() { out[offset + i] = Double(v) } }
    return out
}

/// Mean squared errors on the imputed entries against the true values, in
/// original units, of the imputation and of the observed means per column
/// (mean imputation); also in standardized units when the model standardizes.
struct ImputationScore {
    var entries = 0
    var mse = 0.0
    var meanImputationMSE = 0.0
    var standardizedMSE: Double?
    var standardizedMeanImputationMSE: Double?

    init(imputed: [Double], truth: [Double], observed: [UInt8], columns d: Int, standardization: Standardization?) {
        let n = observed.count / d
        var sums = [Double](repeating: 0, count: d), counts = sums
        for r in 0..<n { for j in 0..<d where observed[r * d + j] != 0 { sums[j] += truth[r * d + j]; counts[j] += 1 } }
        let means = (0..<d).map { counts[$0] > 0 ? sums[$0] / counts[$0] : 0 }
        var se = 0.0, meanSE = 0.0, stdSE = 0.0, stdMeanSE = 0.0
        for r in 0..<n {
            for j in 0..<d where observed[r * d + j] == 0 {
                let t = truth[r * d + j], e = imputed[r * d + j] - t, me = means[j] - t
                se += e * e
                meanSE += me * me
                if let s = standardization {
                    let sd = s.standardDeviation[j]
                    stdSE += (e / sd) * (e / sd)
                    stdMeanSE += (me / sd) * (me / sd)
                }
                entries += 1
            }
        }
        let count = Double(max(entries, 1))
        mse = se / count
        meanImputationMSE = meanSE / count
        if standardization != nil {
            standardizedMSE = stdSE / count
            standardizedMeanImputationMSE = stdMeanSE / count
        }
    }
}

struct Impute: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fill in the missing values of a table (or of any samples) with a trained model.",
        discussion: """
            Reads \(OptionName.data) (.csv: empty, NA and NaN cells are missing; .npy: NaN is missing; \
            \(OptionName.mask) marks more), read as the model's training data was (its columns, \
            standardized by its training statistics), and writes it to \(OptionName.out) with the \
            missing values filled in: .csv (every field of the input as it was, the missing \
            cells of the model's columns filled, in original units) or .npy (N×D float32: \
            observed values as read). With \(OptionName.multiple) M: M imputations (.csv: a \
            leading "imputation" column, 1…M, over M copies of the table; .npy: M×N×D). \
            Rows without any observed value are imputed from the model's marginal: the encoder \
            reads only its fill for them. With \(OptionName.truth) (the complete table), prints \
            the MSE on the imputed entries beside mean imputation's. Under mpirun the rows are \
            split over the ranks; the output does not depend on the number of ranks.
            """)

    @OptionGroup var model: CheckpointOptions

    @Option(name: OptionName.data.name, help: ArgumentHelp("The samples with missing values: .csv or .npy.", valueName: "file"))
    var data: String

    @Option(name: OptionName.mask.name, help: ArgumentHelp(
        "More missing values: a .npy or .csv of \(OptionName.data)'s shape, 1 observed, 0 missing.", valueName: "file"))
    var mask: String?

    @Option(name: OptionName.out.name, help: ArgumentHelp("The completed samples: .csv or .npy.", valueName: "file"))
    var out: String

    @Option(name: OptionName.truth.name, help: ArgumentHelp(
        "The complete samples (.csv or .npy, \(OptionName.data)'s shape): print the MSE on the imputed entries.",
        valueName: "file"))
    var truth: String?

    @OptionGroup var imputation: ImputationOptions

    func validate() throws {
        guard isTable(out) else { throw invalid(.out, "must end in .csv or .npy (got \(out))") }
        if out == data { throw invalid(.out, "is \(OptionName.data) itself: write the completed table elsewhere") }
    }

    func run() throws {
        let (options, dataPath, maskPath, out, truthPath, imputation) = (model, data, mask, out, truth, imputation)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let console = context.console
            guard try communicator.collectively({ try DataFormat.of(dataPath) }) != .imageFolder else {
                throw optionError(.data, "\(dataPath) is a folder: vae-mpi inpaint repairs images", communicator)
            }
            var set = try context.images(file: dataPath, split: .train)
            if let maskPath {
                let current = set
                set = try communicator.collectively { try current.withMask(try ImageSet.loadMask(maskPath, for: current), source: maskPath) }
            }
            let d = set.shape.size
            // The true values, checked before any work.
            var truthValues: [Double]? = nil
            if let truthPath {
                let trainingData = context.trainingData
                let shaped = set
                truthValues = try communicator.collectively { () throws -> [Double] in
                    let t = try ImageSet.load(images: truthPath, options: trainingData.readOptions)
                    guard t.count == shaped.count && t.shape.size == d else {
                        throw DatasetError.incompatible(path: truthPath, detail: "holds \(t.count) samples of \(t.shape.size) values, "
                            + "but \(dataPath) has \(shaped.count) of \(d): the true values must have its shape")
                    }
                    if let bad = (0..<t.values.count).first(where: { shaped.observed?[$0] == 0 && (t.observed?[$0] == 0) }) {
                        throw DatasetError.incompatible(path: truthPath, detail: "sample \(bad / d), element \(bad % d) is missing "
                            + "too: the true values must be complete where \(dataPath) is missing")
                    }
                    return storedValues(t)
                }
            }
            let missing = set.missingCount
            let empty = set.rowsWithoutObservedValues
            console.print("\(set.count) rows of \(d) values from \(dataPath): \(missing) missing"
                          + String(format: " (%.1f %%)", 100 * Double(missing) / Double(max(set.values.count, 1)))
                          + (empty > 0 ? "; \(plural(empty, "row")) with no observed value, imputed from the model's marginal" : ""))
            let settings = imputation.settings(seed: context.seed)
            let t0 = monotonicSeconds()
            let result = try Imputer(model: context.model, settings: settings).imputeAll(set, communicator: communicator)
            let seconds = monotonicSeconds() - t0
            console.print("imputed with \(imputation.summary) on \(plural(communicator.size, "rank")) in "
                          + String(format: "%.2f s", seconds)
                          + (result.acceptanceRate.map { String(format: "; %.1f %% of the moves accepted", 100 * $0) } ?? ""))
            let stored = storedValues(set)
            let observed = set.observed ?? [UInt8](repeating: 1, count: set.values.count)
            func completed(_ encoderScale: ArraySlice<Float>) -> [Double] {
                let restored = originalUnits(Array(encoderScale), of: set)
                return (0..<restored.count).map { observed[$0] != 0 ? stored[$0] : restored[$0] }
            }
            let single = completed(result.single[...])
            let m = settings.multiple
            let draws = (0..<m).map { k in completed(result.draws[(k * set.values.count) ..< ((k + 1) * set.values.count)]) }
            if let truthValues {
                let score = ImputationScore(imputed: single, truth: truthValues, observed: observed, columns: d,
                                            standardization: set.standardization)
                console.print("MSE on the \(score.entries) imputed entries: " + String(format: "%.4f", score.mse)
                              + String(format: " (mean imputation %.4f)", score.meanImputationMSE)
                              + (score.standardizedMSE.map { String(format: "; standardized %.4f (mean imputation %.4f)", $0,
                                                                    score.standardizedMeanImputationMSE!) } ?? ""))
            }
            let columnNames = set.columnNames ?? (1...d).map(String.init)
            try context.write(try Self.encode(single: single, draws: draws, set: set, observed: observed, data: dataPath,
                                              out: out, columnNames: columnNames), to: out)
            console.print("wrote \(out): \(set.count) rows" + (m > 0 ? " × \(m) imputations" : "") + ", \(missing) values filled in")
        }
    }

    /// The output file: the input CSV with its missing cells filled (every
    /// other field as it was), or a table of numbers.
    static func encode(single: [Double], draws: [[Double]], set: ImageSet, observed: [UInt8], data: String, out: String,
                       columnNames: [String]) throws -> [UInt8] {
        let d = set.shape.size, n = set.count
        let tables = draws.isEmpty ? [single] : draws
        if out.lowercased().hasSuffix(".npy") {
            // The input array's own shape (an N×4 table stays N×4); a CSV's rows are N×D.
            var shape = [n, d]
            if !CSVTable.isCSVPath(data), let array = try? NPYArray(contentsOf: data), array.shape.reduce(1, *) == n * d {
                shape = array.shape
            }
            return NPYWriter.encode(tables.flatMap { $0.map(Float.init) }, shape: (draws.isEmpty ? [] : [draws.count]) + shape)
        }
        if CSVTable.isCSVPath(data) {
            let records = try CSVRecords(parsing: try readPossiblyCompressedFile(data), path: data)
            guard records.rows.count == n else {
                throw DatasetError.incompatible(path: data, detail: "changed while it was read (\(records.rows.count) rows, not \(n))")
            }
            let names = records.columnNames
            let positions = columnNames.map { names.firstIndex(of: $0)! }
            var rows: [[String]] = []
            for (k, table) in tables.enumerated() {
                for r in 0..<n {
                    var row = records.rows[r]
                    for (j, c) in positions.enumerated() where observed[r * d + j] == 0 {
                        while row.count <= c { row.append("") }
                        row[c] = Self.number(table[r * d + j])
                    }
                    rows.append(draws.isEmpty ? row : ["\(k + 1)"] + row)
                }
            }
            let header = records.header.map { draws.isEmpty ? $0 : ["imputation"] + $0 }
                ?? (draws.isEmpty ? nil : ["imputation"] + names)
            return CSVRecords.encode(header: header, rows: rows)
        }
        var rows: [[String]] = []
        for (k, table) in tables.enumerated() {
            for r in 0..<n {
                let row = (0..<d).map { Self.number(table[r * d + $0]) }
                rows.append(draws.isEmpty ? row : ["\(k + 1)"] + row)
            }
        }
        return CSVRecords.encode(header: (draws.isEmpty ? [] : ["imputation"]) + columnNames, rows: rows)
    }

    /// An imputed value as text: 7 significant digits (a float32's precision).
    static func number(_ v: Double) -> String {
        guard v.isFinite else { return v.isNaN ? "NaN" : (v > 0 ? "inf" : "-inf") }
        return String(format: "%.7g", v)
    }
}
