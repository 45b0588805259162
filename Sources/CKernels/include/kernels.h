#ifndef VAE_MPI_KERNELS_H
#define VAE_MPI_KERNELS_H
// Kernels that need instruction sets chosen at run time (AVX-512, AVX512_BF16),
// written in C with per-function target attributes, and the CPU feature checks
// that choose them. Swift code is compiled for the build host's baseline
// (AVX2), so these are the only places that use wider vectors.

#include <stddef.h>
#include <stdint.h>

// CPU features, from CPUID and XGETBV (the OS must save the vector state).
int ck_cpu_has_avx512f(void);
int ck_cpu_has_avx512_bf16(void);
int ck_cpu_has_amx_bf16(void);

// bfloat16 rounding of n floats (round to nearest even, as AVX512_BF16's
// VCVTNEPS2BF16 and oneDNN do; NaN stays NaN).
void ck_f32_to_bf16(const float *source, uint16_t *destination, size_t n);
// The bits ck_f32_to_bf16 gives elements [first, first + n) of an array of
// `total` elements (source and destination point at element `first`). With
// AVX512_BF16 its vector body reads subnormals as zeros and its scalar tail
// does not, so an element's rounding depends on its place in the array.
void ck_f32_to_bf16_part(const float *source, uint16_t *destination, size_t n, size_t first, size_t total);

// bfloat16 to float (exact).
void ck_bf16_to_f32(const uint16_t *source, float *destination, size_t n);
// out[i] = bf16(Σ_{r < ranks} f32(blocks[r·n + i])): the sum in fp32, rank by rank in order, rounded once.
void ck_sum_bf16_blocks(const uint16_t *blocks, size_t ranks, size_t n, uint16_t *out);

// out[i] = ((segments[0][i] + segments[1][i]) + segments[2][i]) + …, i < n: the sum over
// `ranks` arrays in rank order (the shared-memory gradient reduction). `out`
// may be one of the segments.
void ck_sum_segments(float *const *segments, size_t ranks, size_t n, float *out);

// One Adam step (PyTorch's torch.optim.Adam semantics, see Adam.swift) over n
// elements: g' = g·scale; m = m + (1−β1)(g' − m); v = β2·v + (1−β2)·g'²;
// p −= stepSize · m / (√v · inverseBiasCorrection2Sqrt + ε).
// Products and sums are rounded separately (no fused multiply-add), so the
// AVX-512 and the portable paths give the same bits.
typedef struct {
    float gradient_scale, one_minus_beta1, beta2, one_minus_beta2, step_size, inverse_bias_correction2_sqrt, epsilon;
} ck_adam_constants;
void ck_adam_update(float *parameters, const float *gradient, float *m, float *v, size_t n, ck_adam_constants c);
// The shared-memory step of one rank's slice in one pass over memory: the
// gradient of parameter i (i < n) is the rank-order sum of
// segments[r][offset + i] (as ck_sum_segments), the step is ck_adam_update's,
// and the updated parameter is also written to publish[i] (for the other
// ranks to copy). The same bits as the three calls in turn; `publish` may
// point into one of the segments. Returns 1 if any summed gradient is
// infinite or NaN (checked while it is in L1), else 0.
int ck_adam_sum_update(float *parameters, float *const *segments, size_t ranks, size_t offset, float *m, float *v,
                       size_t n, ck_adam_constants c, float *publish);
// The same step with a bf16 gradient (widened exactly on the fly).
void ck_adam_update_bf16_gradient(float *parameters, const uint16_t *gradient, float *m, float *v, size_t n,
                                  ck_adam_constants c);

// Layout and elementwise kernels of the channels-last convolutions.
// For each of `batch` row-major (rows × cols) matrices: dst = srcᵀ.
void ck_transpose_batch(const float *source, float *destination, size_t batch, size_t rows, size_t cols);
// The transpose of a (rows × cols) matrix whose elements are runs of `run`
// floats: destination run (j, i) = source run (i, j).
void ck_transpose_runs(const float *source, float *destination, size_t rows, size_t cols, size_t run);
// out = dy where y > 0, else 0 (the ReLU pullback); the bf16 form rounds the result.
void ck_relu_backward(const float *dy, const float *y, float *out, size_t n);
// out[j] = Σ_i x[i·cols + j] (a bias gradient); out is overwritten.
void ck_column_sums(const float *x, size_t rows, size_t cols, float *out);
// The ReLU pullback of a (rows, cols) gradient and its column sums in one pass:
// g = y > 0 ? dy : 0 into out (f32, may be NULL) and out16 (bf16, may be NULL:
// ck_f32_to_bf16's bits over the whole array); sums[j] = Σ_i g[i·cols + j]
// from 0 in row order (ck_column_sums' bits).
void ck_relu_backward_sums(const float *dy, const float *y, float *out, uint16_t *out16, size_t rows, size_t cols,
                           float *sums);
// x[i·cols + j] += bias[j], then max(·, 0) when relu.
void ck_add_bias(float *x, const float *bias, size_t rows, size_t cols, int relu);
// im2col for channels-last images: x (B, H, W, C) → cols (B·Ho·Wo, C·kh·kw), column
// (c, i, j) of output position (oy, ox) = x[b, oy·s − p + i, ox·s − p + j, c] (0 outside).
void ck_im2col_nhwc(const float *x, size_t batch, size_t height, size_t width, size_t channels,
                    size_t kernel_height, size_t kernel_width, size_t stride, size_t padding,
                    size_t output_height, size_t output_width, float *cols);
// ck_f32_to_bf16 of ck_im2col_nhwc's matrix, with its bits, without the f32
// matrix: blocks of rows gathered into L1 and rounded there.
void ck_im2col_nhwc_bf16(const float *x, size_t batch, size_t height, size_t width, size_t channels,
                         size_t kernel_height, size_t kernel_width, size_t stride, size_t padding,
                         size_t output_height, size_t output_width, uint16_t *cols);
// The same gather with the columns in tap-major order (i, j, c): each kernel
// row's kw·C values are one contiguous copy of the image's row. For elements
// of `element_size` bytes (4: f32, 2: bf16 already rounded), zeros outside.
void ck_im2col_nhwc_taps(const void *x, size_t element_size, size_t batch, size_t height, size_t width,
                         size_t channels, size_t kernel_height, size_t kernel_width, size_t stride, size_t padding,
                         size_t output_height, size_t output_width, void *cols);
// out (rows, channels, taps) = in (rows, taps, channels) permuted; out is overwritten.
void ck_taps_to_channels_major(const float *in, size_t rows, size_t taps, size_t channels, float *out);
// Its adjoint: dx (B, H, W, C) = Σ over windows of cols; dx is overwritten.
void ck_col2im_nhwc(const float *cols, size_t batch, size_t height, size_t width, size_t channels,
                    size_t kernel_height, size_t kernel_width, size_t stride, size_t padding,
                    size_t output_height, size_t output_width, float *dx);

// The Bernoulli likelihood from logits over n elements (Bernoulli.swift):
// terms[i] = max(l, 0) − l·x + log1p(e^−|l|), and, when gradient is not NULL,
// gradient[i] = σ(l) − x. The same operations in the same order as Swift's
// fastExp and fastLog1p (Math.swift), so the AVX-512 and the portable paths
// give Swift's bits.
void ck_bernoulli_nll(const float *logits, const float *x, size_t n, float *terms, float *gradient);

// A count row's softmax, first half (Counts.swift, rowSoftmax): returns the
// row's largest logit (Swift.max's choices, NaN passed over) and writes
// shares[j] = fastExp(l[j] − top), the bits of the Swift loop either path.
float ck_softmax_exponentials(const float *logits, size_t width, float *shares);
// The multinomial's terms of a row (MultinomialLikelihood): with c_j = x_j
// if x_j > 0, else 0, terms[j] = c_j == 0 ? 0 : (float)(−c_j·((double)l_j −
// lse)); n = Σ c_j in Double, in order, returned; when gradient is not NULL,
// gradient[j] = (float)n · shares[j] − (float)c_j. The zeros of a sparse row
// cost a comparison: they add nothing to n and their terms are 0.
double ck_multinomial_row(const float *logits, const float *x, size_t width, const float *shares, double lse,
                          float *terms, float *gradient);

// 1 if any of the n floats is infinite or NaN.
int ck_any_non_finite(const float *x, size_t n);

// Fixed point (--reproducible): acc[i] += round-half-even(x[i]·scale), exact
// for |x[i]·scale| < 2^51; and back: out[i] = (float)((double)acc[i]·inverse_scale).
void ck_fixed_point_accumulate(const float *x, size_t n, double scale, int64_t *acc);
void ck_fixed_point_to_float(const int64_t *acc, size_t n, double inverse_scale, float *out);
// max |x[i]| (0 for n = 0; NaNs are not seen: check finiteness first).
float ck_max_abs(const float *x, size_t n);
// a[i] += b[i].
void ck_add_in_place(float *a, const float *b, size_t n);

// The first layer on sparse input (interactions, counts): x (B, D) held as
// CSR rows (row r's nonzeros are values[starts[r] .. starts[r+1]) in columns
// columns[…]). Sums in a fixed order, with fused multiply-adds:
// y[r, o] = (E + O) + bias[o], E and O the sums over the row's nonzeros at
// even and at odd CSR positions of values[k]·w[o, columns[k]], then
// (s > 0 ? s : 0) when relu; the weight gradient dw[o, j] = Σ over rows r in
// order of dy[r, o]·x[r, j] (added to dw when accumulate, else written, zeros
// included). With bf16, the weights (forward) or dy (gradient) are rounded
// to bf16; round the values beforehand (ck_bf16_round_in_place), as the
// dense bf16 GEMMs round both factors. `tile` is scratch space of
// ck_sparse_tile_floats(d) floats. w and dw are (H, D) row-major. The
// AVX-512 and portable paths give the same bits; the _portable entry points
// run the latter whatever the processor (for tests).
size_t ck_sparse_tile_floats(size_t d);
void ck_sparse_linear(const int64_t *starts, const int32_t *columns, const float *values, size_t b, const float *w,
                      size_t h, size_t d, const float *bias, int relu, int bf16, float *tile, float *y);
void ck_sparse_linear_weight_gradient(const int64_t *starts, const int32_t *columns, const float *values, size_t b,
                                      const float *dy, size_t h, size_t d, int bf16, int accumulate, float *tile,
                                      float *dw);
// x (B, D) dense as CSR: writes starts (B + 1) and, while at most `limit`
// values are nonzero (any bit set: −0 and NaN count), their columns and
// values; returns the count, or −1 past the limit (the arrays then partial).
// columns and values need room for limit + 16 (whole vectors are stored).
int64_t ck_dense_to_csr(const float *x, size_t b, size_t d, size_t limit, int64_t *starts, int32_t *columns,
                        float *values);
void ck_bf16_round_in_place(float *x, size_t n);
// The number of nonzero values (any bit set) of x[0 … n), or limit + 1 as soon as it passes limit.
size_t ck_count_nonzero(const float *x, size_t n, size_t limit);
void ck_sparse_linear_portable(const int64_t *starts, const int32_t *columns, const float *values, size_t b,
                               const float *w, size_t h, size_t d, const float *bias, int relu, int bf16, float *tile,
                               float *y);
void ck_sparse_linear_weight_gradient_portable(const int64_t *starts, const int32_t *columns, const float *values,
                                               size_t b, const float *dy, size_t h, size_t d, int bf16,
                                               int accumulate, float *tile, float *dw);

// Philox4x32-10 (RNG.swift, Philox.block): the four words of block i are the
// cipher of counter (first + i (mod 2^32), c1, c2, c3) under key (k0, k1),
// written to out[4i…4i+3], for `blocks` blocks. Integer arithmetic: the
// AVX-512 path (16 blocks at a time) gives the bits of the scalar one.
void ck_philox_blocks(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t first, size_t blocks,
                      uint32_t *out);
// Word indices[i] of the same stream (lane indices[i] % 4 of block
// indices[i] / 4, the block index taken mod 2^32), for n indices.
void ck_philox_words_at(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, uint32_t c3, const int64_t *indices,
                        size_t n, uint32_t *out);


// bf16 products with one narrow dimension (the few-channel convolutions'
// GEMMs, where oneDNN's kernels reach a quarter of their rate). Both sum
// along k in blocks of 512, each block from zero in pairs as VDPBF16PS
// does (acc + a[2i+1]·b[2i+1], then + a[2i]·b[2i], each a fused
// multiply-add, subnormals read and written as zeros), and add the block
// sums in order: the bits of oneDNN 2.6's brgemm matmul (one thread) on
// these shapes; with more threads oneDNN splits long sums between them.
// The AVX512_BF16 and portable paths give the same bits; the _portable
// entry points run the latter whatever the processor (for tests).
// C (m, n) = A (m, k) · B (k, n) [+ bias (n)] [then max(·, 0)], A row-major
// (row stride k), B's element (i, o) at b[i·b_k_stride + o·b_n_stride]; for
// a small k (the im2col matrix's C·kh·kw columns).
void ck_bf16_gemm_narrow_k(const uint16_t *a, size_t m, size_t k, const uint16_t *b, size_t b_k_stride,
                           size_t b_n_stride, size_t n, const float *bias, int relu, float *c, size_t ldc);
void ck_bf16_gemm_narrow_k_portable(const uint16_t *a, size_t m, size_t k, const uint16_t *b, size_t b_k_stride,
                                    size_t b_n_stride, size_t n, const float *bias, int relu, float *c, size_t ldc);
// C (m, n) = Aᵀ · B for A (k, m) and B (k, n) row-major (row strides lda,
// ldb): a weight gradient, summed over k output positions, for small m and n.
void ck_bf16_gemm_tn_narrow(const uint16_t *a, size_t k, size_t m, size_t lda, const uint16_t *b, size_t n,
                            size_t ldb, float *c, size_t ldc);
void ck_bf16_gemm_tn_narrow_portable(const uint16_t *a, size_t k, size_t m, size_t lda, const uint16_t *b, size_t n,
                                     size_t ldb, float *c, size_t ldc);

#endif
