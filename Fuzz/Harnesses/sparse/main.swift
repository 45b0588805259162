import Datasets
import Training
import Foundation

/// Sparse inputs: any bytes as a Matrix Market file (both axes) and as an
/// interaction log (counts, ratings, clicks, and against fixed items) give a
/// set or an error naming the file and line, never a trap; a set's rows read
/// back and its held-out split runs.
let directory = NSTemporaryDirectory() + "fuzz-sparse-\(getpid())"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let bytes = Data(bytes: data, count: size)
    func exercise(_ set: ImageSet) {
        guard set.count > 0 else { return }
        _ = set.batch([0, set.count - 1])
        _ = set.description
        _ = set.columnPopularity
        _ = set.selecting([set.count - 1, 0]).values.floats.count
    }
    let mtx = directory + "/m.mtx"
    if (try? bytes.write(to: URL(fileURLWithPath: mtx))) != nil {
        for transpose in [false, true] {
            if let set = try? ImageSet.loadMatrixMarket(mtx, transpose: transpose) { exercise(set) }
        }
    }
    let log = directory + "/r.csv"
    if (try? bytes.write(to: URL(fileURLWithPath: log))) != nil {
        for columns in [InteractionColumns(), InteractionColumns(user: "u", item: "i", rating: "r"),
                        InteractionColumns(user: "u", item: "i", rating: "r", minRating: 4)] {
            if let (set, _) = try? ImageSet.loadInteractions(log, columns: columns) {
                exercise(set)
                _ = try? ImageSet.loadInteractions(log, columns: columns, items: Array((set.columnNames ?? []).prefix(2)))
            }
        }
    }
    return 0
}
