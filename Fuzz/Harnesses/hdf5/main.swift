import Datasets
import Foundation

/// HDF5 files: any bytes written to a file and read as `file.h5:/images`
/// (and its labels) give a set or an error naming the file and dataset,
/// never a trap in vae-mpi's code. libhdf5 itself parses the file: a crash
/// inside it becomes an error (CHDF5Reader's guard), after which this
/// process reads no more HDF5; one the guard misses is reported as the
/// library's (see scripts/fuzz.sh).
let directory = NSTemporaryDirectory() + "fuzz-hdf5-\(getpid())"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let file = directory + "/f.h5"
    guard (try? Data(bytes: data, count: size).write(to: URL(fileURLWithPath: file))) != nil else { return 0 }
    for dataset in ["/images", "/g/x", "/labels"] {
        if let set = try? ImageSet.load(images: file + ":" + dataset, options: ReadOptions(levels: nil, counts: true)),
           set.count > 0 {
            _ = set.batch([0, set.count - 1])
            _ = set.description
        }
        _ = try? ImageSet.load(images: file + ":" + dataset, options: ReadOptions(levels: 7))
    }
    return 0
}
