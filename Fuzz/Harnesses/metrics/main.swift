import Foundation
@testable import Training

private let path = "/dev/shm/vae-mpi-fuzz-metrics-\(getpid()).jsonl"

/// metrics.jsonl as a resumed run reads it back (for curves.png).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size))
    let curves = TrainingCurves(metricsPath: path)
    if !curves.train.isEmpty || !curves.test.isEmpty { _ = curves.render(title: "fuzz") }
    return 0
}
