import ArgumentParser
import Artifacts
import Collectives
import Datasets
import Foundation
import Imaging
import Training
import VAEModel

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-sample scores of a trained model (−ELBO, reconstruction, KL, −log p(x)), and how well they separate anomalies.",
        discussion: """
            Scores every image: the −ELBO (nats; the same noise as evaluate), its reconstruction \
            NLL and KL terms, and with \(OptionName.importanceSamples) K > 1 the importance-weighted \
            −log p(x). Higher is more unusual. Writes them in input order to \(OptionName.out) \
            (.csv: index, label, neg_elbo, reconstruction_nll, kl[, neg_log_px]; .npy: an N×S \
            float64 matrix of the scores) and draws their histogram by class. By default the \
            images are the test split of the data the model was trained on, every class of it \
            (\(OptionName.trainClasses) applied to training only). Under mpirun the images are split \
            over the ranks.

            With labels and \(OptionName.normalClasses): the AUROC and average precision of each \
            score for telling the other classes (anomalies) from the normal ones, and the \
            confusion counts at a threshold that a fraction \(OptionName.contamination) of the \
            normal training images exceed (An & Cho 2015).
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(name: OptionName.importanceSamples.name, help: ArgumentHelp("Importance samples K per image for −log p(x) (0 or 1: the ELBO's scores only).", valueName: "k"))
    var importanceSamples: Int = 0

    @Option(name: OptionName.out.name, help: ArgumentHelp("Output scores: .csv or .npy.", valueName: "file"))
    var out: String?

    @Option(name: OptionName.histogram.name, help: ArgumentHelp("Histogram of the scores by class (default: beside \(OptionName.out), <name>-histogram.png).", valueName: "png"))
    var histogram: String?

    @Option(name: OptionName.normalClasses.name, help: ArgumentHelp("The normal classes (labels or class names); the others are anomalies.", valueName: "a,b,…"))
    var normalClasses: String?

    @Option(name: OptionName.contamination.name, help: ArgumentHelp("With \(OptionName.normalClasses): the fraction q of normal training images above the threshold (default: 0.05).", valueName: "q"))
    var contamination: Double?

    @Option(name: OptionName.seed.name, help: "Seed of the noise (default: the checkpoint's seed).")
    var seed: UInt64?

    func validate() throws {
        try require(importanceSamples, atLeast: 0, .importanceSamples)
        if let contamination, !(contamination > 0 && contamination < 1) {
            throw invalid(.contamination, "must be between 0 and 1, exclusive (got \(contamination))")
        }
        if contamination != nil && normalClasses == nil {
            throw invalid(.contamination, "needs \(OptionName.normalClasses)")
        }
        if let out, !(out.hasSuffix(".csv") || out.hasSuffix(".npy")) {
            throw invalid(.out, "must end in .csv or .npy (got \(out))")
        }
        if let histogram, !histogram.hasSuffix(".png") { throw invalid(.histogram, "must end in .png (got \(histogram))") }
    }

    func run() throws {
        let (options, dataOptions, k, out, normal, q, seedOption) = (model, data, importanceSamples, out, normalClasses,
                                                                      contamination ?? 0.05, seed)
        let histogramPath = histogram ?? out.map { (($0 as NSString).deletingPathExtension) + "-histogram.png" }
        Execution.run { communicator in
            let context = try options.open(communicator)
            let source = dataOptions.data.map { context.trainingData.allClasses.reading(directory: $0) }
                ?? context.trainingData.allClasses
            let images = try context.images(from: source, file: dataOptions.images, labels: dataOptions.labels,
                                            split: dataOptions.split)
            let seed = seedOption ?? context.seed
            let classNames = context.classNames
            // The normal classes, as labels, checked before any work.
            var normalLabels: Set<Int32>? = nil
            if let normal {
                guard let labels = images.labels else {
                    throw optionError(.normalClasses, "\(dataOptions.setName) has no labels", communicator)
                }
                var set = Set<Int32>()
                for token in normal.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !token.isEmpty {
                    if let label = Int32(token), labels.contains(label) {
                        set.insert(label)
                    } else if let index = classNames.firstIndex(of: token), labels.contains(Int32(index)) {
                        set.insert(Int32(index))
                    } else {
                        let present = Set(labels).sorted().map { l in Int(l) < classNames.count ? "\(l) \(classNames[Int(l)])" : "\(l)" }
                        throw optionError(.normalClasses, "no class \(token) in \(dataOptions.setName) (its classes: "
                                          + present.joined(separator: ", ") + ")", communicator)
                    }
                }
                guard !set.isEmpty, Set(labels).subtracting(set).count > 0 else {
                    throw optionError(.normalClasses, set.isEmpty ? "names no class"
                                      : "names every class of \(dataOptions.setName); the anomalies are the other classes",
                                      communicator)
                }
                normalLabels = set
            }
            let t0 = monotonicSeconds()
            let scores = try Inference.scores(context.model, images: images, seed: seed, importanceSamples: k,
                                              batchSize: dataOptions.batchSize, communicator: communicator)
            let seconds = monotonicSeconds() - t0
            let console = context.console
            let d = Double(images.shape.size) * M_LN2
            // Bits per dimension only where −log₂ p is a code length (a discrete likelihood of these values).
            let bits = context.model.likelihood.isCodeLength(for: images.description)
            console.print("scored \(images.count) \(dataOptions.split.rawValue) images in \(String(format: "%.2f", seconds)) s"
                          + (k > 1 ? " (K = \(k) importance samples)" : "") + "; means:")
            for (name, values) in scores.columns {
                let mean = values.reduce(0, +) / Double(max(values.count, 1))
                console.print("  " + name.padding(toLength: 20, withPad: " ", startingAt: 0)
                              + String(format: "%10.3f nats", mean) + (bits ? String(format: "  %.4f bits/dim", mean / d) : ""))
            }
            if let out {
                try context.write(Self.encode(scores, labels: images.labels, asCSV: out.hasSuffix(".csv")), to: out)
                console.print("wrote \(out): \(images.count) rows (" + (out.hasSuffix(".csv")
                    ? "index" + (images.labels == nil ? "" : ", label") + ", " : "")
                    + scores.columns.map(\.name).joined(separator: ", ") + ")")
            }
            let main = scores.columns.last { $0.name == "neg_log_px" } ?? scores.columns[0]
            if let histogramPath {
                try context.write(Self.histogram(main.values, name: main.name, labels: images.labels, classNames: classNames,
                                                 normal: normalLabels),
                                  to: histogramPath, what: "histogram of \(main.name) by class")
            }
            guard let normalLabels, let labels = images.labels else { return }
            let positive = labels.map { !normalLabels.contains($0) }
            // The threshold: a fraction q of the normal training images score above it.
            let training = try context.images(from: context.trainingData.allClasses, split: .train)
            let normalTraining = (training.labels ?? []).indices.filter { normalLabels.contains(training.labels![$0]) }
            guard !normalTraining.isEmpty else {
                throw optionError(.normalClasses, "the training data has no images of the normal classes", communicator)
            }
            let trainingScores = try Inference.scores(context.model, images: training.selecting(normalTraining), seed: seed,
                                                      importanceSamples: k, batchSize: dataOptions.batchSize,
                                                      communicator: communicator)
            let anomalies = positive.filter { $0 }.count
            console.print("normal classes \(normalLabels.sorted().map(String.init).joined(separator: ",")): "
                          + "\(labels.count - anomalies) normal and \(anomalies) anomalous images; threshold at the "
                          + "\(String(format: "%g", 1 - q)) quantile of \(normalTraining.count) normal training images' scores")
            let anomalousClasses = Set(labels).subtracting(normalLabels).sorted()
            for ((name, values), (_, trainingValues)) in zip(scores.columns, trainingScores.columns) {
                let auroc = AnomalyMetrics.auroc(scores: values, positive: positive) ?? .nan
                let ap = AnomalyMetrics.averagePrecision(scores: values, positive: positive) ?? .nan
                let threshold = AnomalyMetrics.threshold(exceededBy: q, of: trainingValues)
                let c = AnomalyMetrics.confusion(scores: values, positive: positive, threshold: threshold)
                console.print("  " + name.padding(toLength: 20, withPad: " ", startingAt: 0)
                              + String(format: "AUROC %.3f  AP %.3f  threshold %.3f: TP %d  FP %d  TN %d  FN %d",
                                       auroc, ap, threshold, c.truePositives, c.falsePositives, c.trueNegatives,
                                       c.falseNegatives))
                guard name == main.name, anomalousClasses.count > 1 else { continue }
                // Each anomalous class against the normal images alone.
                let perClass = anomalousClasses.map { anomaly -> String in
                    let picked = labels.indices.filter { labels[$0] == anomaly || normalLabels.contains(labels[$0]) }
                    let value = AnomalyMetrics.auroc(scores: picked.map { values[$0] },
                                                     positive: picked.map { labels[$0] == anomaly }) ?? .nan
                    let className = Int(anomaly) < classNames.count ? " \(classNames[Int(anomaly)])" : ""
                    return "\(anomaly)\(className) " + String(format: "%.3f", value)
                }
                console.print("    AUROC of each anomalous class: " + perClass.joined(separator: ", "))
            }
        }
    }

    static func encode(_ scores: SampleScores, labels: [Int32]?, asCSV: Bool) -> [UInt8] {
        let columns = scores.columns
        if !asCSV {
            var matrix: [Double] = []
            matrix.reserveCapacity(scores.count * columns.count)
            for i in 0..<scores.count { for c in columns { matrix.append(c.values[i]) } }
            return NPYWriter.encode(matrix, shape: [scores.count, columns.count])
        }
        var text = "index" + (labels == nil ? "" : ",label") + "," + columns.map(\.name).joined(separator: ",") + "\n"
        for i in 0..<scores.count {
            text += "\(i)" + (labels.map { ",\($0[i])" } ?? "")
            for c in columns { text += "," + String(format: "%.6f", c.values[i]) }
            text += "\n"
        }
        return Array(text.utf8)
    }

    /// Per-class outlines of the score's distribution (each class's fraction
    /// per bin, so small classes show), over the 0.5th to 99.5th percentile.
    static func histogram(_ values: [Double], name: String, labels: [Int32]?, classNames: [String],
                          normal: Set<Int32>?) -> Raster {
        let sorted = values.filter(\.isFinite).sorted()
        let lo = sorted.isEmpty ? 0 : sorted[Int(Double(sorted.count - 1) * 0.005)]
        var hi = sorted.isEmpty ? 1 : sorted[Int(Double(sorted.count - 1) * 0.995)]
        if hi <= lo { hi = lo + 1 }
        let bins = 60
        let width = (hi - lo) / Double(bins)
        let classes = labels.map { Set($0).sorted() } ?? [0]
        var series: [PlotSeries] = []
        for (index, label) in classes.enumerated() {
            var counts = [Double](repeating: 0, count: bins)
            var total = 0.0
            for (i, v) in values.enumerated() where labels == nil || labels![i] == label {
                guard v.isFinite else { continue }
                counts[min(max(Int((v - lo) / width), 0), bins - 1)] += 1
                total += 1
            }
            let labelName = labels == nil ? "all images"
                : (Int(label) < classNames.count ? "\(label) \(classNames[Int(label)])" : "\(label)")
                  + (normal.map { $0.contains(label) ? " (normal)" : "" } ?? "")
            series.append(PlotSeries(name: labelName,
                                     points: (0...bins).map { b in (lo + Double(b) * width, b < bins ? counts[b] / max(total, 1) : 0) },
                                     color: categoricalColors[index % categoricalColors.count], steps: true))
        }
        return LinePlot.render([PlotPanel(title: "fraction of the images of each class per bin", xLabel: name + " (nats)",
                                          series: series, yFromZero: true)],
                               title: "\(values.count) images: \(name) by class", panelHeight: 420)
    }
}
