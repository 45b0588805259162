import Artifacts
import Foundation
import Imaging

/// What curves.png shows, kept by rank 0 as the run goes (and read back
/// from metrics.jsonl when a run resumes): the training and test −ELBO per
/// step, their reconstruction and KL terms (a panel each), the learning rate,
/// and, for a run that ranks held-out users, their NDCG@100 and Recall@20
/// beside popularity's.
struct TrainingCurves {
    struct TrainPoint { var step: Double, reconstruction: Double, kl: Double, learningRate: Double }
    struct TestPoint {
        var step: Double, reconstruction: Double, kl: Double
        /// NDCG@100 and Recall@20 of the model and of popularity (NaN: no ranked users).
        var ndcg = Double.nan, recall20 = Double.nan, popularityNDCG = Double.nan, popularityRecall20 = Double.nan
    }

    var train: [TrainPoint] = []
    var test: [TestPoint] = []

    /// The curves of the metrics lines already in `metricsPath` (a resumed run's).
    init(metricsPath: String? = nil) {
        guard let metricsPath, let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else { return }
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let type = object["type"] as? String, let step = object["step"] as? Double else { continue }
            let number = { (key: String) in (object[key] as? Double) ?? .nan }
            if type == "train" {
                train.append(TrainPoint(step: step, reconstruction: number("reconstruction"), kl: number("kl"),
                                        learningRate: number("learning_rate")))
            } else if type == "eval" {
                test.append(TestPoint(step: step, reconstruction: number("test_reconstruction"), kl: number("test_kl"),
                                      ndcg: number("test_ndcg_at_100"), recall20: number("test_recall_at_20"),
                                      popularityNDCG: number("popularity_ndcg_at_100"),
                                      popularityRecall20: number("popularity_recall_at_20")))
            }
        }
    }

    func render(title: String) -> Raster {
        let (blue, orange, green, red, purple) = (categoricalColors[0], categoricalColors[1], categoricalColors[2],
                                                  categoricalColors[3], categoricalColors[4])
        // The first tenth of the steps (the loss falling from its initial value) may leave the top of the panel.
        let lastStep = max(train.last?.step ?? 0, test.last?.step ?? 0)
        let settled = lastStep * 0.1
        var panels = [
            PlotPanel(title: "-ELBO, nats per sample (train: mean since the previous log line; test: whole test set)",
                      xLabel: "step", series: [
                          PlotSeries(name: "train", points: train.map { ($0.step, $0.reconstruction + $0.kl) }, color: blue),
                          PlotSeries(name: "test", points: test.map { ($0.step, $0.reconstruction + $0.kl) }, color: orange,
                                     markers: true),
                      ], yRangeFromX: settled),
            PlotPanel(title: "reconstruction (negative log-likelihood), nats per sample", xLabel: "step", series: [
                PlotSeries(name: "train", points: train.map { ($0.step, $0.reconstruction) }, color: blue),
                PlotSeries(name: "test", points: test.map { ($0.step, $0.reconstruction) }, color: orange, markers: true),
            ], yRangeFromX: settled),
            PlotPanel(title: "KL divergence of the posterior from the prior, nats per sample", xLabel: "step", series: [
                PlotSeries(name: "train", points: train.map { ($0.step, $0.kl) }, color: green),
                PlotSeries(name: "test", points: test.map { ($0.step, $0.kl) }, color: red, markers: true),
            ], yFromZero: true),
            PlotPanel(title: "learning rate", xLabel: "step", series: [
                PlotSeries(name: "learning rate", points: train.map { ($0.step, $0.learningRate) }, color: purple),
            ], yFromZero: true),
        ]
        let ranked = test.filter { !$0.ndcg.isNaN }
        if !ranked.isEmpty {
            panels.append(PlotPanel(title: "held-out users: NDCG@100 and Recall@20 (the model, and ranking by popularity)",
                                    xLabel: "step", series: [
                PlotSeries(name: "NDCG@100", points: ranked.map { ($0.step, $0.ndcg) }, color: blue, markers: true),
                PlotSeries(name: "Recall@20", points: ranked.map { ($0.step, $0.recall20) }, color: orange, markers: true),
                PlotSeries(name: "popularity NDCG@100", points: ranked.map { ($0.step, $0.popularityNDCG) }, color: green),
                PlotSeries(name: "popularity Recall@20", points: ranked.map { ($0.step, $0.popularityRecall20) }, color: red),
            ], yFromZero: true))
        }
        return LinePlot.render(panels, title: title, panelHeight: 190)
    }
}
