import CDNNL
#if canImport(Glibc)
import Glibc
#endif

// oneDNN (Intel's deep-learning kernel library, the one PyTorch uses on CPU)
// through its C API. This file is the only one that imports it. Primitives are
// created once per shape and kept: a step calls the same few dozen again and
// again, with new data pointers each time.
// Legend: M, N, K the GEMM's dimensions; B batch, C input and O output
// channels, H×W input and Ho×Wo output size.

/// A failure inside oneDNN: the call and its status.
public struct DNNLError: Error, CustomStringConvertible {
    public let call: String
    public let status: String
    public var description: String { "oneDNN: \(call) failed (\(status))" }
}

@inline(__always)
func check(_ status: dnnl_status_t, _ call: @autoclosure () -> String) throws {
    guard status == dnnl_success else {
        throw DNNLError(call: call(), status: String(cString: dnnl_status2str(status)))
    }
}

/// A precondition on a oneDNN call that cannot fail for shapes the ops have
/// already checked (a failure is a programmer error, named with oneDNN's status).
@inline(__always)
func mustSucceed(_ status: dnnl_status_t, _ call: @autoclosure () -> String) {
    precondition(status == dnnl_success, "oneDNN: \(call()) failed (\(String(cString: dnnl_status2str(status))))")
}

/// The CPU engine, its stream, and the primitives made so far.
final class DNNLContext {
    let engine: dnnl_engine_t
    let stream: dnnl_stream_t
    private var matmuls: [MatmulKey: DNNLMatmul] = [:]
    private var convolutions: [ConvolutionKey: DNNLConvolution] = [:]
    private var permutes: [PermuteKey: DNNLReorder] = [:]

    init() throws {
        var engine: dnnl_engine_t? = nil
        try check(dnnl_engine_create(&engine, dnnl_cpu, 0), "dnnl_engine_create")
        var stream: dnnl_stream_t? = nil
        try check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
        self.engine = engine!
        self.stream = stream!
    }

    deinit {
        matmuls.removeAll()
        convolutions.removeAll()
        permutes.removeAll()
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }

    /// Debian's oneDNN runs on OpenMP, whose thread count is read when
    /// libgomp loads, before main; omp_set_num_threads changes it afterwards.
    /// (Looked up at run time: libgomp comes in through libdnnl, and its
    /// development symlink need not be installed.)
    static func setThreads(_ count: Int) {
        typealias SetThreads = @convention(c) (Int32) -> Void
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads") else { return }
        unsafeBitCast(symbol, to: SetThreads.self)(Int32(count))
    }

    /// The implementation oneDNN chose for a primitive ("brg:avx512_core_bf16").
    static func implementation(_ pd: const_dnnl_primitive_desc_t) -> String {
        var info: UnsafePointer<CChar>? = nil
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success, let info else { return "?" }
        return String(cString: info)
    }

    func matmul(_ key: MatmulKey) -> DNNLMatmul {
        if let cached = matmuls[key] { return cached }
        let made = DNNLMatmul(key, context: self)
        matmuls[key] = made
        return made
    }

    func convolution(_ key: ConvolutionKey) -> DNNLConvolution {
        if let cached = convolutions[key] { return cached }
        let made = DNNLConvolution(key, context: self)
        convolutions[key] = made
        return made
    }

    /// f32 (B, C, H, W) between NCHW and NHWC order (oneDNN's jit reorder:
    /// several times faster than a tiled scalar transpose).
    func permute(_ source: UnsafePointer<Float>, dimensions: [Int], toChannelsLast: Bool,
                 into destination: UnsafeMutablePointer<Float>) {
        let key = PermuteKey(dimensions: dimensions, toChannelsLast: toChannelsLast)
        let reorder: DNNLReorder
        if let cached = permutes[key] {
            reorder = cached
        } else {
            reorder = DNNLReorder(from: tagDescriptor(dimensions, type: dnnl_f32, tag: toChannelsLast ? dnnl_nchw : dnnl_nhwc),
                                  to: tagDescriptor(dimensions, type: dnnl_f32, tag: toChannelsLast ? dnnl_nhwc : dnnl_nchw),
                                  context: self)
            permutes[key] = reorder
        }
        reorder.run(from: source, to: destination)
    }

    func execute(_ primitive: dnnl_primitive_t, _ args: [dnnl_exec_arg_t], _ what: String) {
        args.withUnsafeBufferPointer { a in
            mustSucceed(dnnl_primitive_execute(primitive, stream, Int32(a.count), a.baseAddress), "execute \(what)")
        }
        mustSucceed(dnnl_stream_wait(stream), "dnnl_stream_wait")
    }

    /// The primitive and its descriptor for `desc` (with `attr`, or none).
    func primitive(_ desc: UnsafeRawPointer, attr: dnnl_primitive_attr_t? = nil, hint: const_dnnl_primitive_desc_t? = nil,
                   _ what: String) -> (dnnl_primitive_desc_t, dnnl_primitive_t) {
        var pd: dnnl_primitive_desc_t? = nil
        mustSucceed(dnnl_primitive_desc_create(&pd, desc, attr, engine, hint), "dnnl_primitive_desc_create(\(what))")
        var p: dnnl_primitive_t? = nil
        mustSucceed(dnnl_primitive_create(&p, pd), "dnnl_primitive_create(\(what))")
        return (pd!, p!)
    }
}

/// A memory object whose data pointer is set before each use.
final class DNNLMemory {
    let memory: dnnl_memory_t
    var descriptor: dnnl_memory_desc_t

    init(_ descriptor: dnnl_memory_desc_t, context: DNNLContext) {
        var d = descriptor
        var m: dnnl_memory_t? = nil
        mustSucceed(dnnl_memory_create(&m, &d, context.engine, nil), "dnnl_memory_create")
        memory = m!
        self.descriptor = descriptor
    }

    deinit { dnnl_memory_destroy(memory) }

    /// Bytes the descriptor spans (blocked layouts pad channels).
    var byteCount: Int { withUnsafePointer(to: descriptor) { Int(dnnl_memory_desc_get_size($0)) } }

    func bind(_ pointer: UnsafeRawPointer) {
        mustSucceed(dnnl_memory_set_data_handle(memory, UnsafeMutableRawPointer(mutating: pointer)), "set_data_handle")
    }
}

/// A plain row-major matrix descriptor, with row stride `ld`, viewed
/// transposed when `transposed` (the stored matrix is cols × rows).
func matrixDescriptor(rows: Int, cols: Int, ld: Int, transposed: Bool, type: dnnl_data_type_t) -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    let dims: [Int64] = [Int64(rows), Int64(cols)]
    let strides: [Int64] = transposed ? [1, Int64(ld)] : [Int64(ld), 1]
    mustSucceed(dnnl_memory_desc_init_by_strides(&md, 2, dims, type, strides), "memory_desc_init_by_strides")
    return md
}

func tagDescriptor(_ dims: [Int], type: dnnl_data_type_t, tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    mustSucceed(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), dims.map(Int64.init), type, tag),
                "memory_desc_init_by_tag")
    return md
}

struct PermuteKey: Hashable {
    var dimensions: [Int]
    var toChannelsLast: Bool
}

/// A reorder between two layouts of one tensor.
final class DNNLReorder {
    let primitive: (dnnl_primitive_desc_t, dnnl_primitive_t)
    let from, to: DNNLMemory
    unowned let context: DNNLContext

    init(from: dnnl_memory_desc_t, to: dnnl_memory_desc_t, context: DNNLContext) {
        self.context = context
        var f = from, t = to
        var pd: dnnl_primitive_desc_t? = nil
        mustSucceed(dnnl_reorder_primitive_desc_create(&pd, &f, context.engine, &t, context.engine, nil),
                    "reorder_primitive_desc_create")
        var p: dnnl_primitive_t? = nil
        mustSucceed(dnnl_primitive_create(&p, pd), "primitive_create(reorder)")
        primitive = (pd!, p!)
        self.from = DNNLMemory(from, context: context)
        self.to = DNNLMemory(to, context: context)
    }

    deinit {
        dnnl_primitive_destroy(primitive.1)
        dnnl_primitive_desc_destroy(primitive.0)
    }

    func run(from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer) {
        from.bind(source)
        to.bind(destination)
        context.execute(primitive.1, [dnnl_exec_arg_t(arg: DNNL_ARG_FROM, memory: from.memory),
                                      dnnl_exec_arg_t(arg: DNNL_ARG_TO, memory: to.memory)], "reorder")
    }
}

// MARK: - matmul

struct MatmulKey: Hashable {
    var m, n, k: Int
    var lda, ldb, ldc: Int
    var transposeA, transposeB: Bool
    var bf16: Bool
    var bias: Bool
    var relu: Bool
    /// C += A·B instead of C = A·B.
    var accumulate: Bool
}

/// C (M, N) = op(A) (M, K) · op(B) (K, N) [+ bias] [then ReLU | + C], f32 out.
final class DNNLMatmul {
    let primitive: dnnl_primitive_t
    let descriptor: dnnl_primitive_desc_t
    let a, b, c: DNNLMemory
    let bias: DNNLMemory?
    unowned let context: DNNLContext

    init(_ key: MatmulKey, context: DNNLContext) {
        self.context = context
        let type = key.bf16 ? dnnl_bf16 : dnnl_f32
        var aMD = matrixDescriptor(rows: key.m, cols: key.k, ld: key.lda, transposed: key.transposeA, type: type)
        var bMD = matrixDescriptor(rows: key.k, cols: key.n, ld: key.ldb, transposed: key.transposeB, type: type)
        var cMD = matrixDescriptor(rows: key.m, cols: key.n, ld: key.ldc, transposed: false, type: dnnl_f32)
        // The bias broadcasts over rows: a (1, N) matrix.
        var biasMD = matrixDescriptor(rows: 1, cols: key.n, ld: key.n, transposed: false, type: dnnl_f32)
        var desc = dnnl_matmul_desc_t()
        if key.bias {
            mustSucceed(dnnl_matmul_desc_init(&desc, &aMD, &bMD, &biasMD, &cMD), "matmul_desc_init")
        } else {
            mustSucceed(dnnl_matmul_desc_init(&desc, &aMD, &bMD, nil, &cMD), "matmul_desc_init")
        }
        var attr: dnnl_primitive_attr_t? = nil
        mustSucceed(dnnl_primitive_attr_create(&attr), "primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        if key.relu || key.accumulate {
            var ops: dnnl_post_ops_t? = nil
            mustSucceed(dnnl_post_ops_create(&ops), "post_ops_create")
            if key.accumulate { mustSucceed(dnnl_post_ops_append_sum(ops, 1), "append_sum") }
            if key.relu { mustSucceed(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0), "append_eltwise") }
            mustSucceed(dnnl_primitive_attr_set_post_ops(attr, ops), "set_post_ops")
            dnnl_post_ops_destroy(ops)
        }
        (descriptor, primitive) = withUnsafePointer(to: desc) { context.primitive($0, attr: attr, "matmul \(key)") }
        a = DNNLMemory(aMD, context: context)
        b = DNNLMemory(bMD, context: context)
        c = DNNLMemory(cMD, context: context)
        bias = key.bias ? DNNLMemory(biasMD, context: context) : nil
    }

    deinit {
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(descriptor)
    }

    func run(a: UnsafeRawPointer, b: UnsafeRawPointer, bias: UnsafePointer<Float>?, c: UnsafeMutablePointer<Float>) {
        self.a.bind(a)
        self.b.bind(b)
        self.c.bind(c)
        var args = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: self.a.memory),
                    dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: self.b.memory),
                    dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: self.c.memory)]
        if let memory = self.bias, let bias {
            memory.bind(bias)
            args.append(dnnl_exec_arg_t(arg: DNNL_ARG_BIAS, memory: memory.memory))
        }
        context.execute(primitive, args, "matmul")
    }

    var implementation: String { DNNLContext.implementation(descriptor) }
}

// MARK: - convolution

/// A 2-D convolution's shape: input (B, C, H, W) channels-last in memory
/// (NHWC), weights (O, C, kh, kw) as PyTorch stores them, output
/// (B, O, Ho, Wo) channels-last.
struct ConvolutionKey: Hashable {
    var batch, channels, height, width: Int
    var outputChannels, kernelHeight, kernelWidth: Int
    var stride, padding: Int
    var outputHeight, outputWidth: Int
    var bf16: Bool
    /// Fused into the forward pass (as a post-op).
    var relu: Bool
}

/// The three primitives of one convolution shape — forward (with bias and an
/// optional ReLU), backward data, backward weights (with the bias gradient)
/// — and the reorders that move weights between PyTorch's layout and the
/// blocked ones the kernels want. Activations stay NHWC: oneDNN's kernels for
/// it run within a few per cent of its blocked layouts and, unlike them, need
/// no reorder between layers (see the README's performance section).
final class DNNLConvolution {
    unowned let context: DNNLContext
    let key: ConvolutionKey
    let forwardPrimitive, backwardDataPrimitive, backwardWeightsPrimitive: (dnnl_primitive_desc_t, dnnl_primitive_t)
    /// f32 OIHW weights → the forward and backward-data primitives' weights.
    let weightsReorder: (dnnl_primitive_desc_t, dnnl_primitive_t)
    let backwardDataWeightsReorder: (dnnl_primitive_desc_t, dnnl_primitive_t)?
    /// The backward-weights primitive's weight gradient → f32 OIHW.
    let gradientReorder: (dnnl_primitive_desc_t, dnnl_primitive_t)
    let source, destination, bias, userWeights: DNNLMemory
    let weights, backwardDataWeights: DNNLMemory
    let diffSource, diffDestination, diffBias, diffWeights, userDiffWeights: DNNLMemory
    /// Bytes of the kernel-layout weights and weight gradient.
    let weightsBytes, backwardDataWeightsBytes, diffWeightsBytes: Int

    init(_ key: ConvolutionKey, context: DNNLContext) {
        self.context = context
        self.key = key
        let type = key.bf16 ? dnnl_bf16 : dnnl_f32
        let sourceDims = [key.batch, key.channels, key.height, key.width]
        let destinationDims = [key.batch, key.outputChannels, key.outputHeight, key.outputWidth]
        let weightDims = [key.outputChannels, key.channels, key.kernelHeight, key.kernelWidth]
        var sourceMD = tagDescriptor(sourceDims, type: type, tag: dnnl_nhwc)
        var destinationMD = tagDescriptor(destinationDims, type: dnnl_f32, tag: dnnl_nhwc)
        var diffDestinationMD = tagDescriptor(destinationDims, type: type, tag: dnnl_nhwc)
        var diffSourceMD = tagDescriptor(sourceDims, type: dnnl_f32, tag: dnnl_nhwc)
        var anyWeightsMD = tagDescriptor(weightDims, type: type, tag: dnnl_format_tag_any)
        var anyDiffWeightsMD = tagDescriptor(weightDims, type: dnnl_f32, tag: dnnl_format_tag_any)
        let userWeightsMD = tagDescriptor(weightDims, type: dnnl_f32, tag: dnnl_oihw)
        var biasMD = tagDescriptor([key.outputChannels], type: dnnl_f32, tag: dnnl_x)
        let strides: [Int64] = [Int64(key.stride), Int64(key.stride)]
        let left: [Int64] = [Int64(key.padding), Int64(key.padding)]
        // The smallest right/bottom padding that gives the output size: windows
        // never reach further, so this equals PyTorch's symmetric padding.
        let right: [Int64] = [
            Int64(max(0, (key.outputHeight - 1) * key.stride + key.kernelHeight - key.height - key.padding)),
            Int64(max(0, (key.outputWidth - 1) * key.stride + key.kernelWidth - key.width - key.padding)),
        ]

        var forwardDesc = dnnl_convolution_desc_t()
        mustSucceed(dnnl_convolution_forward_desc_init(&forwardDesc, dnnl_forward_training, dnnl_convolution_direct,
                                                       &sourceMD, &anyWeightsMD, &biasMD, &destinationMD,
                                                       strides, left, right), "convolution_forward_desc_init")
        var attr: dnnl_primitive_attr_t? = nil
        mustSucceed(dnnl_primitive_attr_create(&attr), "primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        if key.relu {
            var ops: dnnl_post_ops_t? = nil
            mustSucceed(dnnl_post_ops_create(&ops), "post_ops_create")
            mustSucceed(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0), "append_eltwise")
            mustSucceed(dnnl_primitive_attr_set_post_ops(attr, ops), "set_post_ops")
            dnnl_post_ops_destroy(ops)
        }
        let forward = withUnsafePointer(to: forwardDesc) { context.primitive($0, attr: attr, "convolution forward") }
        forwardPrimitive = forward

        var dataDesc = dnnl_convolution_desc_t()
        mustSucceed(dnnl_convolution_backward_data_desc_init(&dataDesc, dnnl_convolution_direct, &diffSourceMD,
                                                             &anyWeightsMD, &diffDestinationMD, strides, left, right),
                    "convolution_backward_data_desc_init")
        let backwardData = withUnsafePointer(to: dataDesc) { context.primitive($0, hint: forward.0, "convolution backward data") }

        var weightsDesc = dnnl_convolution_desc_t()
        mustSucceed(dnnl_convolution_backward_weights_desc_init(&weightsDesc, dnnl_convolution_direct, &sourceMD,
                                                                &anyDiffWeightsMD, &biasMD, &diffDestinationMD,
                                                                strides, left, right),
                    "convolution_backward_weights_desc_init")
        let backwardWeights = withUnsafePointer(to: weightsDesc) {
            context.primitive($0, hint: forward.0, "convolution backward weights")
        }

        backwardDataPrimitive = backwardData
        backwardWeightsPrimitive = backwardWeights
        let forwardWeightsMD = dnnl_primitive_desc_query_md(forward.0, dnnl_query_weights_md, 0)!.pointee
        let dataWeightsMD = dnnl_primitive_desc_query_md(backwardData.0, dnnl_query_weights_md, 0)!.pointee
        let diffWeightsMD = dnnl_primitive_desc_query_md(backwardWeights.0, dnnl_query_diff_weights_md, 0)!.pointee
        source = DNNLMemory(sourceMD, context: context)
        destination = DNNLMemory(destinationMD, context: context)
        bias = DNNLMemory(biasMD, context: context)
        userWeights = DNNLMemory(userWeightsMD, context: context)
        weights = DNNLMemory(forwardWeightsMD, context: context)
        backwardDataWeights = DNNLMemory(dataWeightsMD, context: context)
        diffSource = DNNLMemory(diffSourceMD, context: context)
        diffDestination = DNNLMemory(diffDestinationMD, context: context)
        diffBias = DNNLMemory(biasMD, context: context)
        diffWeights = DNNLMemory(diffWeightsMD, context: context)
        userDiffWeights = DNNLMemory(userWeightsMD, context: context)
        weightsBytes = weights.byteCount
        backwardDataWeightsBytes = backwardDataWeights.byteCount
        diffWeightsBytes = diffWeights.byteCount

        func reorder(_ from: dnnl_memory_desc_t, _ to: dnnl_memory_desc_t) -> (dnnl_primitive_desc_t, dnnl_primitive_t) {
            var f = from, t = to
            var pd: dnnl_primitive_desc_t? = nil
            mustSucceed(dnnl_reorder_primitive_desc_create(&pd, &f, context.engine, &t, context.engine, nil),
                        "reorder_primitive_desc_create")
            var p: dnnl_primitive_t? = nil
            mustSucceed(dnnl_primitive_create(&p, pd), "primitive_create(reorder)")
            return (pd!, p!)
        }
        weightsReorder = reorder(userWeightsMD, forwardWeightsMD)
        var a = forwardWeightsMD, b = dataWeightsMD
        backwardDataWeightsReorder = dnnl_memory_desc_equal(&a, &b) != 0 ? nil : reorder(userWeightsMD, dataWeightsMD)
        gradientReorder = reorder(diffWeightsMD, userWeightsMD)
    }

    deinit {
        for (pd, p) in [forwardPrimitive, backwardDataPrimitive, backwardWeightsPrimitive, weightsReorder, gradientReorder]
            + (backwardDataWeightsReorder.map { [$0] } ?? []) {
            dnnl_primitive_destroy(p)
            dnnl_primitive_desc_destroy(pd)
        }
    }

    private func run(_ primitive: (dnnl_primitive_desc_t, dnnl_primitive_t), _ args: [(Int32, DNNLMemory)],
                     _ what: String) {
        context.execute(primitive.1, args.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1.memory) }, what)
    }

    /// PyTorch-layout f32 weights into the forward primitive's layout (and
    /// type), and into the backward-data primitive's if that differs.
    func prepareWeights(_ userWeights: UnsafePointer<Float>, into forwardWeights: UnsafeMutableRawPointer,
                        backwardData: UnsafeMutableRawPointer?) {
        self.userWeights.bind(userWeights)
        weights.bind(forwardWeights)
        run(weightsReorder, [(DNNL_ARG_FROM, self.userWeights), (DNNL_ARG_TO, weights)], "weights reorder")
        if let reorder = backwardDataWeightsReorder, let backwardData {
            backwardDataWeights.bind(backwardData)
            run(reorder, [(DNNL_ARG_FROM, self.userWeights), (DNNL_ARG_TO, backwardDataWeights)], "weights reorder")
        }
    }

    /// y (B, Ho, Wo, O) f32 = conv(x (B, H, W, C), weights) + bias [then ReLU].
    func forward(source x: UnsafeRawPointer, weights w: UnsafeRawPointer, bias b: UnsafePointer<Float>,
                 destination y: UnsafeMutablePointer<Float>) {
        source.bind(x)
        weights.bind(w)
        bias.bind(b)
        destination.bind(y)
        run(forwardPrimitive, [(DNNL_ARG_SRC, source), (DNNL_ARG_WEIGHTS, weights), (DNNL_ARG_BIAS, bias),
                      (DNNL_ARG_DST, destination)], "convolution forward")
    }

    /// dx (B, H, W, C) f32 from dy (B, Ho, Wo, O) and the backward-data weights.
    func backwardData(diffDestination dy: UnsafeRawPointer, weights w: UnsafeRawPointer,
                      diffSource dx: UnsafeMutablePointer<Float>) {
        diffDestination.bind(dy)
        backwardDataWeights.bind(w)
        diffSource.bind(dx)
        run(backwardDataPrimitive, [(DNNL_ARG_DIFF_DST, diffDestination), (DNNL_ARG_WEIGHTS, backwardDataWeights),
                           (DNNL_ARG_DIFF_SRC, diffSource)], "convolution backward data")
    }

    /// dW (O, C, kh, kw) f32 in PyTorch's layout and db (O), from x and dy;
    /// `scratch` holds `diffWeightsBytes` for the kernel-layout gradient.
    func backwardWeights(source x: UnsafeRawPointer, diffDestination dy: UnsafeRawPointer,
                         diffWeights dW: UnsafeMutablePointer<Float>, diffBias db: UnsafeMutablePointer<Float>,
                         scratch: UnsafeMutableRawPointer) {
        source.bind(x)
        diffDestination.bind(dy)
        diffWeights.bind(scratch)
        diffBias.bind(db)
        run(backwardWeightsPrimitive, [(DNNL_ARG_SRC, source), (DNNL_ARG_DIFF_DST, diffDestination),
                              (DNNL_ARG_DIFF_WEIGHTS, diffWeights), (DNNL_ARG_DIFF_BIAS, diffBias)],
            "convolution backward weights")
        userDiffWeights.bind(dW)
        run(gradientReorder, [(DNNL_ARG_FROM, diffWeights), (DNNL_ARG_TO, userDiffWeights)], "gradient reorder")
    }

    var implementations: String {
        "fwd \(DNNLContext.implementation(forwardPrimitive.0)), "
            + "bwd-data \(DNNLContext.implementation(backwardDataPrimitive.0)), "
            + "bwd-weights \(DNNLContext.implementation(backwardWeightsPrimitive.0))"
    }
}
