import Artifacts
import Foundation
import Imaging

/// What curves.png shows, kept by rank 0 as the run goes (and read back
/// from metrics.jsonl when a run resumes): the training and test −ELBO per
/// step, their reconstruction and KL terms (a panel each), and the learning rate.
struct TrainingCurves {
    struct TrainPoint { var step: Double, reconstruction: Double, kl: Double, learningRate: Double }
    struct TestPoint { var step: Double, reconstruction: Double, kl: Double }

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
                test.append(TestPoint(step: step, reconstruction: number("test_reconstruction"), kl: number("test_kl")))
            }
        }
    }

    func render(title: String) -> Raster {
        let (blue, orange, green, red, purple) = (categoricalColors[0], categoricalColors[1], categoricalColors[2],
                                                  categoricalColors[3], categoricalColors[4])
        // The first tenth of the steps (the loss falling from its initial value) may leave the top of the panel.
        let lastStep = max(train.last?.step ?? 0, test.last?.step ?? 0)
        let settled = lastStep * 0.1
        let panels = [
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
        return LinePlot.render(panels, title: title, panelHeight: 190)
    }
}
