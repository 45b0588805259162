import ArgumentParser
import Collectives
import Datasets
import Foundation
import TensorCore
import Training
import VAEModel

struct Recommend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Recommend items with a model of interaction rows, or rank held-out users' clicks (Mult-VAE's protocol).",
        discussion: """
            Each user's clicks (or counts) go through the encoder; the decoder's first head scores every \
            item, and the items the user already has are left out. With \(OptionName.out), writes the \
            \(OptionName.top) best items of each user of \(OptionName.interactions) (default: the \
            training users) as CSV: user, rank, item, score, with the original ids. \
            With \(OptionName.evaluate), the run's test users (\(OptionName.heldoutUsers) in training) \
            are split as in Liang et al. 2018: users with at least 5 clicks keep 80 % as fold-in \
            (what the model reads) and hold out ⌊20 %⌋ (seeded per user); NDCG@100 and Recall@20 \
            and @50 are averaged over them, beside ranking by popularity among the training users. \
            Under mpirun the users are split over the ranks; the results do not depend on the number \
            of ranks.
            """)

    @OptionGroup var model: CheckpointOptions

    @Flag(name: OptionName.evaluate.name, help: "Rank the run's held-out users' held-out clicks: NDCG@100, Recall@20, Recall@50.")
    var evaluate = false

    @Option(name: OptionName.interactions.name, help: ArgumentHelp(
        "Users to recommend for: an interaction log with the training log's columns (default: the training users).",
        valueName: "file.csv"))
    var interactions: String?

    @Option(name: OptionName.labels.name, help: ArgumentHelp(
        "With \(OptionName.interactions) and a model conditioned on a covariate: the users' categories, FILE.csv:COLUMN (matched by user id; the log itself can hold the column).",
        valueName: "file.csv:column"))
    var labels: String?

    @Option(name: OptionName.top.name, help: "Items per user in \(OptionName.out) (default: 20).")
    var top: Int = 20

    @Option(name: OptionName.out.name, help: ArgumentHelp("Recommendations: a .csv file (user, rank, item, score).", valueName: "file.csv"))
    var out: String?

    @Option(name: OptionName.seed.name, help: "Seed of the fold-in/held-out split (default: the checkpoint's seed).")
    var seed: UInt64?

    func validate() throws {
        if top < 1 || top > 100_000 { throw invalid(.top, "must be from 1 to 100000 (got \(top))") }
        if !evaluate && out == nil { throw invalid(.out, "is needed (or \(OptionName.evaluate))") }
        if let out, !out.lowercased().hasSuffix(".csv") { throw invalid(.out, "must end in .csv (got \(out))") }
        if labels != nil && interactions == nil {
            throw invalid(.labels, "labels the users of \(OptionName.interactions); the training users have theirs")
        }
        if evaluate && interactions != nil {
            throw invalid(.interactions, "names users to recommend for; \(OptionName.evaluate) ranks the run's own held-out users")
        }
    }

    func run() throws {
        let (options, evaluate, interactionsPath, top, out, seed, labelsPath) = (model, evaluate, interactions, top, out, seed, labels)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let console = context.console
            let trained = context.trainingData
            guard trained.counts == true || trained.interactions != nil else {
                throw optionError(evaluate ? .evaluate : .out, "the model in \(context.checkpoint.path) was not trained on "
                                  + "interactions or counts (a count likelihood, or \(OptionName.interactions))", communicator)
            }
            let training = try context.images(split: .train)
            if evaluate {
                let test = try context.images(split: .test)
                if test.isTrainingSet {
                    throw optionError(.evaluate, "the run in \(context.checkpoint.path) has no held-out users "
                                      + "(train it with \(OptionName.heldoutUsers) N)", communicator)
                }
                let t0 = monotonicSeconds()
                let (model, popular) = try context.model.rankingMetrics(test, seed: seed ?? context.seed,
                                                                        popularity: training.columnPopularity,
                                                                        communicator: communicator)
                guard model.users > 0 else {
                    throw optionError(.evaluate, "none of the \(test.count) held-out users has \(Recommendation.minimumClicks) "
                                      + "or more clicks to split", communicator)
                }
                console.print("held-out users: \(test.count) (\(test.source)); \(model.users) with at least "
                              + "\(Recommendation.minimumClicks) clicks scored (80 % fold-in, 20 % held out)")
                for (name, m) in [("model", model), ("popularity", popular)] {
                    console.print(name.padding(toLength: 11, withPad: " ", startingAt: 0)
                                  + String(format: "NDCG@100 %.4f  Recall@20 %.4f  Recall@50 %.4f", m.ndcg100, m.recall20, m.recall50))
                }
                console.print(String(format: "ranked in %.2f s on %@", monotonicSeconds() - t0, plural(communicator.size, "rank")))
            }
            guard let out else { return }
            var users = training
            if let interactionsPath {
                guard let log = trained.interactions else {
                    throw optionError(.interactions, "the model was not trained on an interaction log", communicator)
                }
                let loaded = try communicator.collectively { try ImageSet.loadInteractions(interactionsPath, columns: log, items: training.columnNames) }
                users = loaded.set
                users.inputNormalization = trained.inputNormalization
                if context.model.isConditional {
                    // The categories by name, numbered as the model's (the run's class names).
                    guard let labelsPath, let spec = LabelTable.Spec(labelsPath) else {
                        throw optionError(.labels, "is needed: the model in \(context.checkpoint.path) is conditioned on a "
                                          + "covariate; give the users' categories as FILE.csv:COLUMN", communicator)
                    }
                    guard let known = training.labelNames ?? trained.classNames else {
                        throw optionError(.labels, "the model in \(context.checkpoint.path) has no names for its "
                                          + "\(context.model.classes) categories to match", communicator)
                    }
                    let newUsers = users
                    let (found, names) = try communicator.collectively {
                        try LabelTable.labels(spec, rows: newUsers.count, rowNames: newUsers.rowNames, data: interactionsPath)
                    }
                    let mapped = try found.map { label -> Int32 in
                        guard let k = known.firstIndex(of: names[Int(label)]) else {
                            throw optionError(.labels, "\"\(names[Int(label)])\" (in \(spec.path)) is not one of the model's "
                                              + "categories (\(known.joined(separator: ", ")))", communicator)
                        }
                        return Int32(k)
                    }
                    users = users.labelled(mapped, names: known)
                }
                if loaded.unknownItems > 0 {
                    console.print("\(plural(loaded.unknownItems, "interaction")) with items the model does not know left out")
                }
            }
            let t0 = monotonicSeconds()
            let (items, scores) = try context.model.recommendations(users, k: top, communicator: communicator)
            let itemNames = training.columnNames ?? (1...training.shape.size).map(String.init)
            let userNames = users.rowNames ?? (1...users.count).map(String.init)
            try context.write({ () -> [UInt8] in
                var rows: [[String]] = []
                for (u, list) in items.enumerated() {
                    for (i, item) in list.enumerated() {
                        rows.append([userNames[u], String(i + 1), itemNames[Int(item)], String(scores[u][i])])
                    }
                }
                return CSVRecords.encode(header: ["user", "rank", "item", "score"], rows: rows)
            }(), to: out)
            console.print("wrote \(out): the \(top) best unseen items of \(plural(users.count, "user")) in "
                          + String(format: "%.2f s", monotonicSeconds() - t0))
        }
    }
}
