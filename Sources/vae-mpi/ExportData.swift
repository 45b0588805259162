import ArgumentParser
import Artifacts
import Collectives
import Datasets
import Foundation
import Training

struct ExportData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-data",
        abstract: "Decode a dataset as training would and write it as .npy files.",
        discussion: """
            Reads \(OptionName.data) (an image folder, or IDX/NPY files) with the image options \
            train takes, and writes to \(OptionName.out): train-images.npy and test-images.npy \
            (N×C×H×W, uint8; float32 in [0, 1] when any image has 16-bit samples), \
            train-labels.npy and test-labels.npy (int64) when there are labels, and \
            classes.txt (line k names label k) when there are class names. The folder is a \
            dataset directory \(OptionName.data) reads directly: decode a large folder once, \
            train from its arrays, or check the pixels with NumPy.
            """)

    @Option(name: OptionName.data.name, help: ArgumentHelp("Dataset directory or image folder.", valueName: "dir"))
    var data: String

    @OptionGroup var images: ImageFolderOptions

    @Option(name: OptionName.testFraction.name, help: ArgumentHelp(
        "Without a test set: the fraction of the images held out (default: 0.1 for image folders).", valueName: "f"))
    var testFraction: Double?

    @Option(name: OptionName.seed.name, help: "Seed of the held-out split (train's --seed gives the same split).")
    var seed: UInt64 = 1

    @Option(name: OptionName.out.name, help: ArgumentHelp("Output folder (created if needed).", valueName: "dir"))
    var out: String

    func validate() throws {
        if let testFraction, !(testFraction > 0 && testFraction < 1) {
            throw invalid(.testFraction, "must be between 0 and 1 (got \(testFraction))")
        }
    }

    func run() throws {
        var source = DataSource(directory: data, testFraction: testFraction)
        try images.apply(to: &source)
        let (settled, seed, out) = (source, seed, out)
        Execution.run { communicator in
            let console = Console(rank: communicator.rank)
            let rank = communicator.rank
            try communicator.collectively {
                guard rank == 0 else { return }
                let t0 = monotonicSeconds()
                let prepared = try settled.prepare(seed: seed)
                for note in prepared.notes { console.print(note) }
                let (train, test) = (try prepared.load(.train), try prepared.load(.test))
                let splits = DataSplits(train: train.images, test: test.images, classNames: prepared.classNames,
                                        testIsHeldOut: prepared.testIsHeldOut, bad: prepared.bad + train.bad + test.bad)
                let seconds = monotonicSeconds() - t0
                try Files.createDirectory(out)
                for (name, set) in [("train", splits.train), ("test", splits.test)] {
                    let shape = [set.count, set.shape.channels, set.shape.height, set.shape.width]
                    let bytes = NPYWriter.encode(rawBytes: set.values.rawBytes, descr: set.values.element.numpyDescr, shape: shape)
                    try Files.writeAtomically(bytes, to: "\(out)/\(name)-images.npy")
                    if let labels = set.labels {
                        try Files.writeAtomically(NPYWriter.encode(labels.map(Int64.init), shape: [labels.count]),
                                                  to: "\(out)/\(name)-labels.npy")
                    }
                    console.print("wrote \(out)/\(name)-images.npy: \(set.count) image\(set.count == 1 ? "" : "s") of \(set.shape)"
                                  + (set.labels == nil ? "" : ", with \(name)-labels.npy"))
                }
                if let names = splits.classNames {
                    try Files.writeAtomically(names.map { $0 + "\n" }.joined(), to: "\(out)/classes.txt")
                    console.print("wrote \(out)/classes.txt: \(names.count) class names")
                }
                if !splits.bad.isEmpty {
                    console.print("skipped \(splits.bad.count) unreadable image\(splits.bad.count == 1 ? "" : "s"):")
                    for bad in splits.bad { console.print("  \(bad.path): \(bad.reason)") }
                }
                console.print("decoded \(splits.train.count + splits.test.count) images in \(String(format: "%.2f", seconds)) s"
                              + (splits.testIsHeldOut ? " (test set held out with seed \(seed))" : ""))
            }
        }
    }
}
