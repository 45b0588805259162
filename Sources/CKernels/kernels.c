#include "kernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

// AVX-512 needs the OS to save opmask, ZMM_Hi256 and Hi16_ZMM state (XCR0 bits 5–7) as well as XMM/YMM (1–2).
static int os_saves_avx512(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;  // OSXSAVE
    return (xgetbv0() & 0xE6) == 0xE6;
}

static int detect_avx512f(void) {
    unsigned int a, b, c, d;
    if (!os_saves_avx512() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 16) & 1;
}

static int detect_avx512_bf16(void) {
    unsigned int a, b, c, d;
    if (!detect_avx512f() || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1;
}

// The answers are properties of the machine; asked once (CPUID is slow in VMs).
int ck_cpu_has_avx512f(void) {
    static int known = -1;
    if (known < 0) known = detect_avx512f();
    return known;
}

int ck_cpu_has_avx512_bf16(void) {
    static int known = -1;
    if (known < 0) known = detect_avx512_bf16();
    return known;
}

int ck_cpu_has_amx_bf16(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    // AMX tile state must be enabled by the OS too (XCR0 bits 17, 18).
    return ((d >> 22) & 1) && (xgetbv0() & 0x60000) == 0x60000;
}
#else
int ck_cpu_has_avx512f(void) { return 0; }
int ck_cpu_has_avx512_bf16(void) { return 0; }
int ck_cpu_has_amx_bf16(void) { return 0; }
#endif

static inline int non_finite_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (u & 0x7F800000u) == 0x7F800000u;
}

static void adam_portable(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                          ck_adam_constants c) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * c.gradient_scale;
        float mi = m[i] + c.one_minus_beta1 * (gi - m[i]);
        float g2 = c.one_minus_beta2 * gi;
        float vi = v[i] * c.beta2 + g2 * gi;
        m[i] = mi;
        v[i] = vi;
        float denominator = sqrtf(vi) * c.inverse_bias_correction2_sqrt + c.epsilon;
        p[i] -= c.step_size * (mi / denominator);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static void adam_avx512(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                       ck_adam_constants c) {
    const __m512 scale = _mm512_set1_ps(c.gradient_scale), omb1 = _mm512_set1_ps(c.one_minus_beta1);
    const __m512 b2 = _mm512_set1_ps(c.beta2), omb2 = _mm512_set1_ps(c.one_minus_beta2);
    const __m512 step = _mm512_set1_ps(c.step_size), ibc2 = _mm512_set1_ps(c.inverse_bias_correction2_sqrt);
    const __m512 eps = _mm512_set1_ps(c.epsilon);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), scale);
        __m512 mo = _mm512_loadu_ps(m + i), vo = _mm512_loadu_ps(v + i);
        __m512 mi = _mm512_add_ps(mo, _mm512_mul_ps(omb1, _mm512_sub_ps(gi, mo)));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(vo, b2), _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        __m512 denominator = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), ibc2), eps);
        __m512 update = _mm512_mul_ps(step, _mm512_div_ps(mi, denominator));
        _mm512_storeu_ps(p + i, _mm512_sub_ps(_mm512_loadu_ps(p + i), update));
    }
    adam_portable(p + i, g + i, m + i, v + i, n - i, c);
}
#endif

void ck_adam_update(float *p, const float *g, float *m, float *v, size_t n, ck_adam_constants c) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) {
        adam_avx512(p, g, m, v, n, c);
        return;
    }
#endif
    adam_portable(p, g, m, v, n, c);
}

// sums[i] = ((segments[0][i0 + i] + segments[1][i0 + i]) + …) for i < m: a
// block of the rank-order sum (ranks ≥ 1), for ck_sum_segments and
// ck_adam_sum_update alike.
static inline void sum_block(float *const *segments, size_t ranks, size_t i0, size_t m, float *sums) {
    const float *first = segments[0] + i0;
    for (size_t i = 0; i < m; i++) sums[i] = first[i];
    for (size_t r = 1; r < ranks; r++) {
        const float *segment = segments[r] + i0;
        for (size_t i = 0; i < m; i++) sums[i] += segment[i];
    }
}

int ck_adam_sum_update(float *p, float *const *segments, size_t ranks, size_t offset, float *m, float *v, size_t n,
                       ck_adam_constants c, float *publish) {
    // Blocks small enough that their summed gradient and updated parameters
    // are read back from L1: the segments, p, m and v cross memory once, and
    // the sums are checked for infinities and NaNs there.
    enum { BLOCK = 1024 };
    float sums[BLOCK];
    int bad = 0;
    if (ranks == 0) return 0;
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        size_t count = n - i0 < BLOCK ? n - i0 : BLOCK;
        sum_block(segments, ranks, offset + i0, count, sums);
        bad |= ck_any_non_finite(sums, count);
        ck_adam_update(p + i0, sums, m + i0, v + i0, count, c);
        memcpy(publish + i0, p + i0, count * sizeof(float));
    }
    return bad;
}

static inline uint16_t bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);  // quiet NaN
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bf16")))
static void f32_to_bf16_avx512(const float *restrict s, uint16_t *restrict d, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh packed = _mm512_cvtneps_pbh(_mm512_loadu_ps(s + i));
        _mm256_storeu_si256((__m256i *)(d + i), (__m256i)packed);
    }
    for (; i < n; i++) d[i] = bf16_round(s[i]);
}
#endif

void ck_f32_to_bf16(const float *s, uint16_t *d, size_t n) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512_bf16()) {
        f32_to_bf16_avx512(s, d, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) d[i] = bf16_round(s[i]);
}

// VCVTNEPS2BF16's rounding of one float: bf16_round's, except that a
// subnormal is read as a zero of its sign (the instruction ignores MXCSR).
static inline uint16_t bf16_round_as_vector(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7F800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    return bf16_round(x);
}

void ck_f32_to_bf16_part(const float *s, uint16_t *d, size_t n, size_t first, size_t total) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512_bf16()) {
        // ck_f32_to_bf16 over `total` converts [0, body) with the instruction
        // and the rest with bf16_round.
        size_t body = total / 16 * 16;
        size_t vector = body > first ? (body - first < n ? body - first : n) : 0;
        size_t whole = vector / 16 * 16;
        f32_to_bf16_avx512(s, d, whole);
        for (size_t i = whole; i < vector; i++) d[i] = bf16_round_as_vector(s[i]);
        for (size_t i = vector; i < n; i++) d[i] = bf16_round(s[i]);
        return;
    }
#endif
    (void)first;
    (void)total;
    for (size_t i = 0; i < n; i++) d[i] = bf16_round(s[i]);
}

void ck_sum_segments(float *const *segments, size_t ranks, size_t n, float *out) {
    enum { CHUNK = 1024 };
    float sums[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        sum_block(segments, ranks, i0, m, sums);
        for (size_t i = 0; i < m; i++) out[i0 + i] = sums[i];
    }
}

// Swift's fastExp, fastLog and fastLog1p (TensorCore/Math.swift), operation
// for operation (no contraction: -ffp-contract=off), with Swift.min/max's
// choices: max(a, b) = b >= a ? b : a, min(a, b) = b < a ? b : a.
static inline float swift_max(float a, float b) { return b >= a ? b : a; }
static inline float swift_min(float a, float b) { return b < a ? b : a; }

static inline float fast_exp(float x) {
    x = swift_min(swift_max(x, -87.336544f), 88.376262f);
    const float magic = 12582912.0f;
    float t = x * 1.44269504f + magic;
    float n = t - magic;
    float r = (x - n * 0.693359375f) + n * 2.1219444e-4f;
    float p = 1.98756915e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, 4);
    uint32_t sb = (tb - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &sb, 4);
    return p * scale;
}

static inline float fast_log(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    float e = (float)((int32_t)((bits >> 23) & 0xFFu) - 126);
    uint32_t mb = (bits & 0x007FFFFFu) | 0x3F000000u;
    float m;
    memcpy(&m, &mb, 4);
    int small = m < 0.707106781f;
    e = small ? e - 1.0f : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += e * -2.12194440e-4f;
    y += -0.5f * z;
    return (m + y) + e * 0.693359375f;
}

static inline float fast_log1p(float t) {
    float u = 1.0f + t;
    float d = u - 1.0f;
    return d == 0.0f ? t : fast_log(u) * (t / d);
}

static void bernoulli_portable(const float *l, const float *x, size_t n, float *terms, float *g) {
    for (size_t i = 0; i < n; i++) {
        float t = fast_exp(-fabsf(l[i]));
        terms[i] = swift_max(l[i], 0.0f) - l[i] * x[i] + fast_log1p(t);
        if (g) g[i] = (l[i] >= 0.0f ? 1.0f / (1.0f + t) : t / (1.0f + t)) - x[i];
    }
}

#if defined(__x86_64__)
// b >= a ? b : a and b < a ? b : a, lane by lane (NaN in a stays).
#define SWIFT_MAX(a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((b), (a), _CMP_GE_OQ), (a), (b))
#define SWIFT_MIN(a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((b), (a), _CMP_LT_OQ), (a), (b))

// p ← p·r + c[k] for each coefficient in turn (Horner's steps, each product
// and sum rounded; a subtraction in the scalar code is the addition of the
// negated coefficient, the same bits).
__attribute__((target("avx512f")))
static inline __m512 horner16(__m512 p, __m512 r, const float *c, int n) {
    for (int k = 0; k < n; k++) p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(c[k]));
    return p;
}

__attribute__((target("avx512f")))
static inline __m512 fast_exp16(__m512 x) {
    x = SWIFT_MIN(SWIFT_MAX(x, _mm512_set1_ps(-87.336544f)), _mm512_set1_ps(88.376262f));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 t = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_add_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))),
                             _mm512_mul_ps(n, _mm512_set1_ps(2.1219444e-4f)));
    static const float c[] = {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                              5.0000001201e-1f};
    __m512 p = horner16(_mm512_set1_ps(1.98756915e-4f), r, c, 5);
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1.0f));
    __m512i sb = _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t),
                                                                     _mm512_set1_epi32(0x4B400000)),
                                                    _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(sb));
}

__attribute__((target("avx512f")))
static inline __m512 fast_log16(__m512 x) {
    __m512i bits = _mm512_castps_si512(x);
    __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(bits, 23),
                                                                    _mm512_set1_epi32(0xFF)),
                                                   _mm512_set1_epi32(126)));
    __m512 m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007FFFFF)),
                                                   _mm512_set1_epi32(0x3F000000)));
    const __m512 one = _mm512_set1_ps(1.0f);
    __mmask16 small = _mm512_cmp_ps_mask(m, _mm512_set1_ps(0.707106781f), _CMP_LT_OQ);
    e = _mm512_mask_blend_ps(small, e, _mm512_sub_ps(e, one));
    m = _mm512_mask_blend_ps(small, _mm512_sub_ps(m, one), _mm512_sub_ps(_mm512_add_ps(m, m), one));
    __m512 z = _mm512_mul_ps(m, m);
    static const float c[] = {-1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f, 1.4249322787e-1f,
                              -1.6668057665e-1f, 2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f};
    __m512 y = horner16(_mm512_set1_ps(7.0376836292e-2f), m, c, 8);
    y = _mm512_mul_ps(_mm512_mul_ps(y, m), z);
    y = _mm512_add_ps(y, _mm512_mul_ps(e, _mm512_set1_ps(-2.12194440e-4f)));
    y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_set1_ps(-0.5f), z));
    return _mm512_add_ps(_mm512_add_ps(m, y), _mm512_mul_ps(e, _mm512_set1_ps(0.693359375f)));
}

__attribute__((target("avx512f")))
static void bernoulli_avx512(const float *l, const float *x, size_t n, float *terms, float *g) {
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u));
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 li = _mm512_loadu_ps(l + i), xi = _mm512_loadu_ps(x + i);
        // −|l|: the sign bit set.
        __m512 t = fast_exp16(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(li), _mm512_castps_si512(sign))));
        __m512 u = _mm512_add_ps(one, t);
        __m512 d = _mm512_sub_ps(u, one);
        __mmask16 exact = _mm512_cmp_ps_mask(d, zero, _CMP_EQ_OQ);
        __m512 log1p = _mm512_mask_blend_ps(exact, _mm512_mul_ps(fast_log16(u), _mm512_div_ps(t, d)), t);
        __m512 term = _mm512_add_ps(_mm512_sub_ps(SWIFT_MAX(li, zero), _mm512_mul_ps(li, xi)), log1p);
        _mm512_storeu_ps(terms + i, term);
        if (g) {
            __mmask16 positive = _mm512_cmp_ps_mask(li, zero, _CMP_GE_OQ);
            __m512 sigma = _mm512_mask_blend_ps(positive, _mm512_div_ps(t, u), _mm512_div_ps(one, u));
            _mm512_storeu_ps(g + i, _mm512_sub_ps(sigma, xi));
        }
    }
    bernoulli_portable(l + i, x + i, n - i, terms + i, g ? g + i : NULL);
}
#endif

void ck_bernoulli_nll(const float *logits, const float *x, size_t n, float *terms, float *gradient) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) {
        bernoulli_avx512(logits, x, n, terms, gradient);
        return;
    }
#endif
    bernoulli_portable(logits, x, n, terms, gradient);
}

static float softmax_exponentials_portable(const float *l, size_t width, float *shares) {
    float top = -INFINITY;
    for (size_t j = 0; j < width; j++) top = swift_max(top, l[j]);
    for (size_t j = 0; j < width; j++) shares[j] = fast_exp(l[j] - top);
    return top;
}

// x's count: x if x > 0, else 0 (NaN too).
static inline float count_of(float x) { return x > 0.0f ? x : 0.0f; }

// The terms of x[j0 … width) and the count total n carried on over them, in order.
static double multinomial_terms_from(const float *l, const float *x, size_t j0, size_t width, double lse, float *terms,
                                     double n) {
    for (size_t j = j0; j < width; j++) {
        float c = count_of(x[j]);
        // Adding a zero count leaves n's bits (n starts at +0 and stays ≥ 0).
        if (c != 0.0f) n += (double)c;
        terms[j] = c == 0.0f ? 0.0f : (float)(-(double)c * ((double)l[j] - lse));
    }
    return n;
}

// The gradient of x[i0 … width): total · shares − c.
static void multinomial_gradient_from(const float *x, const float *shares, size_t i0, size_t width, float total,
                                      float *g) {
    for (size_t i = i0; i < width; i++) g[i] = total * shares[i] - count_of(x[i]);
}

static double multinomial_row_portable(const float *l, const float *x, size_t width, const float *shares, double lse,
                                       float *terms, float *g) {
    double n = multinomial_terms_from(l, x, 0, width, lse, terms, 0.0);
    if (g) multinomial_gradient_from(x, shares, 0, width, (float)n, g);
    return n;
}

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static float softmax_exponentials_avx512(const float *l, size_t width, float *shares) {
    // The largest value is the same whichever order it is found in; only
    // zeros' signs could differ, and l − (+0) and l − (−0) have the same
    // fastExp, as Double(±0) + log(total ≥ 1) has the same lse.
    __m512 top16 = _mm512_set1_ps(-INFINITY);
    size_t j = 0;
    for (; j + 16 <= width; j += 16) top16 = SWIFT_MAX(top16, _mm512_loadu_ps(l + j));
    float lanes[16], top = -INFINITY;
    _mm512_storeu_ps(lanes, top16);
    for (int k = 0; k < 16; k++) top = swift_max(top, lanes[k]);
    for (size_t t = j; t < width; t++) top = swift_max(top, l[t]);
    const __m512 top_v = _mm512_set1_ps(top);
    for (j = 0; j + 16 <= width; j += 16)
        _mm512_storeu_ps(shares + j, fast_exp16(_mm512_sub_ps(_mm512_loadu_ps(l + j), top_v)));
    for (; j < width; j++) shares[j] = fast_exp(l[j] - top);
    return top;
}

__attribute__((target("avx512f")))
static double multinomial_row_avx512(const float *l, const float *x, size_t width, const float *shares, double lse,
                                     float *terms, float *g) {
    double n = 0.0;
    size_t j = 0;
    const __m512 zero = _mm512_setzero_ps();
    for (; j + 16 <= width; j += 16) {
        __mmask16 nonzero = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + j), zero, _CMP_GT_OQ);
        _mm512_storeu_ps(terms + j, zero);
        // The nonzero counts in order: n's sum and their terms as the scalar code.
        while (nonzero) {
            int k = __builtin_ctz(nonzero);
            nonzero &= nonzero - 1;
            double c = (double)x[j + k];
            n += c;
            terms[j + k] = (float)(-c * ((double)l[j + k] - lse));
        }
    }
    n = multinomial_terms_from(l, x, j, width, lse, terms, n);
    if (g) {
        const __m512 total = _mm512_set1_ps((float)n);
        size_t i = 0;
        for (; i + 16 <= width; i += 16) {
            __m512 xi = _mm512_loadu_ps(x + i);
            __m512 c = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(xi, zero, _CMP_GT_OQ), xi);
            _mm512_storeu_ps(g + i, _mm512_sub_ps(_mm512_mul_ps(total, _mm512_loadu_ps(shares + i)), c));
        }
        multinomial_gradient_from(x, shares, i, width, (float)n, g);
    }
    return n;
}
#endif

float ck_softmax_exponentials(const float *logits, size_t width, float *shares) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) return softmax_exponentials_avx512(logits, width, shares);
#endif
    return softmax_exponentials_portable(logits, width, shares);
}

double ck_multinomial_row(const float *logits, const float *x, size_t width, const float *shares, double lse,
                          float *terms, float *gradient) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) return multinomial_row_avx512(logits, x, width, shares, lse, terms, gradient);
#endif
    return multinomial_row_portable(logits, x, width, shares, lse, terms, gradient);
}

int ck_any_non_finite(const float *x, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= non_finite_bits(x[i]);
    return bad;
}

void ck_transpose_runs(const float *restrict s, float *restrict d, size_t rows, size_t cols, size_t run) {
    if (run == 1) {
        ck_transpose_batch(s, d, 1, rows, cols);
        return;
    }
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            const float *from = s + (i * cols + j) * run;
            float *to = d + (j * rows + i) * run;
            for (size_t t = 0; t < run; t++) to[t] = from[t];
        }
}

void ck_transpose_batch(const float *restrict s, float *restrict d, size_t batch, size_t rows, size_t cols) {
    enum { T = 16 };
    for (size_t n = 0; n < batch; n++) {
        const float *src = s + n * rows * cols;
        float *dst = d + n * rows * cols;
        for (size_t i0 = 0; i0 < rows; i0 += T) {
            size_t i1 = i0 + T < rows ? i0 + T : rows;
            for (size_t j0 = 0; j0 < cols; j0 += T) {
                size_t j1 = j0 + T < cols ? j0 + T : cols;
                for (size_t i = i0; i < i1; i++)
                    for (size_t j = j0; j < j1; j++) dst[j * rows + i] = src[i * cols + j];
            }
        }
    }
}

void ck_relu_backward(const float *restrict dy, const float *restrict y, float *restrict out, size_t n) {
    // Both loads unconditional, so the select vectorizes.
    for (size_t i = 0; i < n; i++) {
        float g = dy[i];
        out[i] = y[i] > 0 ? g : 0.0f;
    }
}

void ck_column_sums(const float *restrict x, size_t rows, size_t cols, float *restrict out) {
    if (cols == 1) {
        // One column (the bias of a one-channel output): the same sum in a
        // register. Through out[0] every add waited for the store before it
        // (the conv model's last layer, 50,176 rows: 2 % of its run).
        float sum = 0;
        for (size_t i = 0; i < rows; i++) sum += x[i];
        out[0] = sum;
        return;
    }
    for (size_t j = 0; j < cols; j++) out[j] = 0;
    for (size_t i = 0; i < rows; i++) {
        const float *r = x + i * cols;
        for (size_t j = 0; j < cols; j++) out[j] += r[j];
    }
}

/* The ReLU pullback of a (rows, cols) gradient in one pass: g = y > 0 ? dy : 0,
 * written as f32 and/or bf16, with sums[j] = the column sums of g from 0 in row
 * order (the bits of ck_column_sums over g). The bf16 rounding is
 * ck_f32_to_bf16's over the whole array: with columns in whole AVX-512
 * vectors every element takes its vector rounding; otherwise g is made a
 * block of rows at a time (in `out`, or in L1) and rounded from there as
 * ck_f32_to_bf16_part says. */
static void relu_backward_sums_portable(const float *restrict dy, const float *restrict y, float *restrict out,
                                        uint16_t *restrict out16, size_t rows, size_t cols, float *restrict sums) {
    enum { BLOCK_FLOATS = 4096 };
    float small[BLOCK_FLOATS];
    const size_t total = rows * cols, block_rows = cols <= BLOCK_FLOATS ? BLOCK_FLOATS / cols : 1;
    float *scratch = out || !out16 || cols <= BLOCK_FLOATS ? small : malloc(cols * sizeof(float));
    if (!scratch) abort();
    for (size_t i0 = 0; i0 < rows; i0 += block_rows) {
        const size_t n = rows - i0 < block_rows ? rows - i0 : block_rows;
        float *g = out ? out + i0 * cols : scratch;
        for (size_t i = 0; i < n; i++) {
            const float *d = dy + (i0 + i) * cols, *v = y + (i0 + i) * cols;
            for (size_t j = 0; j < cols; j++) {
                float value = v[j] > 0 ? d[j] : 0.0f;
                sums[j] += value;
                if (out || out16) g[i * cols + j] = value;
            }
        }
        if (out16) ck_f32_to_bf16_part(g, out16 + i0 * cols, n * cols, i0 * cols, total);
    }
    if (scratch != small) free(scratch);
}

#if defined(__x86_64__)
// Whether the AVX-512 pass applies: columns in whole vectors (so that every
// element takes the vector rounding) and AVX512_BF16.
static int relu_backward_sums_in_lanes(size_t cols) { return cols % 16 == 0 && ck_cpu_has_avx512_bf16(); }

/* Columns in lanes, 64 at a time (four accumulators): cols a multiple of 16. */
__attribute__((target("avx512f,avx512bf16")))
static void relu_backward_sums_avx512(const float *restrict dy, const float *restrict y, float *restrict out,
                                      uint16_t *restrict out16, size_t rows, size_t cols, float *restrict sums) {
    const __m512 zero = _mm512_setzero_ps();
    for (size_t j0 = 0; j0 < cols; j0 += 64) {
        const size_t width = cols - j0 < 64 ? cols - j0 : 64, vectors = width / 16;
        __m512 acc[4] = {zero, zero, zero, zero};
        for (size_t k = 0; k < vectors; k++) acc[k] = _mm512_loadu_ps(sums + j0 + 16 * k);
        for (size_t i = 0; i < rows; i++) {
            const size_t base = i * cols + j0;
            for (size_t k = 0; k < vectors; k++) {
                const size_t at = base + 16 * k;
                __mmask16 positive = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + at), zero, _CMP_GT_OQ);
                __m512 g = _mm512_maskz_mov_ps(positive, _mm512_loadu_ps(dy + at));
                acc[k] = _mm512_add_ps(acc[k], g);
                if (out) _mm512_storeu_ps(out + at, g);
                if (out16) _mm256_storeu_si256((__m256i *)(out16 + at), (__m256i)_mm512_cvtneps_pbh(g));
            }
        }
        for (size_t k = 0; k < vectors; k++) _mm512_storeu_ps(sums + j0 + 16 * k, acc[k]);
    }
}
#endif

void ck_relu_backward_sums(const float *dy, const float *y, float *out, uint16_t *out16, size_t rows, size_t cols,
                           float *sums) {
    for (size_t j = 0; j < cols; j++) sums[j] = 0;
    if (rows == 0 || cols == 0) return;
#if defined(__x86_64__)
    if (relu_backward_sums_in_lanes(cols)) {
        relu_backward_sums_avx512(dy, y, out, out16, rows, cols, sums);
        return;
    }
#endif
    relu_backward_sums_portable(dy, y, out, out16, rows, cols, sums);
}

void ck_add_bias(float *restrict x, const float *restrict bias, size_t rows, size_t cols, int relu) {
    for (size_t i = 0; i < rows; i++) {
        float *r = x + i * cols;
        if (relu) {
            for (size_t j = 0; j < cols; j++) { float v = r[j] + bias[j]; r[j] = v > 0 ? v : 0.0f; }
        } else {
            for (size_t j = 0; j < cols; j++) r[j] += bias[j];
        }
    }
}

void ck_im2col_nhwc_taps(const void *x, size_t element_size, size_t batch, size_t height, size_t width,
                         size_t channels, size_t kh, size_t kw, size_t stride, size_t padding, size_t oh, size_t ow,
                         void *cols) {
    const size_t k = channels * kh * kw, pixel = channels * element_size;
    const long H = (long)height, W = (long)width;
    const unsigned char *source = x;
    unsigned char *out = cols;
    for (size_t b = 0; b < batch; b++) {
        const unsigned char *image = source + b * height * width * pixel;
        for (size_t oy = 0; oy < oh; oy++) {
            const long y0 = (long)(oy * stride) - (long)padding;
            for (size_t ox = 0; ox < ow; ox++) {
                const long x0 = (long)(ox * stride) - (long)padding;
                unsigned char *row = out + ((b * oh + oy) * ow + ox) * k * element_size;
                // The columns of the kernel row that fall inside the image: [j0, j1).
                const long j0 = x0 < 0 ? -x0 : 0;
                const long j1 = x0 + (long)kw > W ? W - x0 : (long)kw;
                for (size_t i = 0; i < kh; i++) {
                    unsigned char *taps = row + i * kw * pixel;
                    const long iy = y0 + (long)i;
                    if (iy < 0 || iy >= H || j1 <= j0) {
                        memset(taps, 0, kw * pixel);
                        continue;
                    }
                    if (j0 > 0) memset(taps, 0, (size_t)j0 * pixel);
                    memcpy(taps + (size_t)j0 * pixel, image + ((size_t)iy * width + (size_t)(x0 + j0)) * pixel,
                           (size_t)(j1 - j0) * pixel);
                    if (j1 < (long)kw) memset(taps + (size_t)j1 * pixel, 0, (kw - (size_t)j1) * pixel);
                }
            }
        }
    }
}

void ck_taps_to_channels_major(const float *restrict in, size_t rows, size_t taps, size_t channels,
                               float *restrict out) {
    for (size_t r = 0; r < rows; r++) {
        const float *a = in + r * taps * channels;
        float *o = out + r * taps * channels;
        for (size_t t = 0; t < taps; t++)
            for (size_t c = 0; c < channels; c++) o[c * taps + t] = a[t * channels + c];
    }
}

// The im2col/col2im loops below are written once, always inlined, and called
// with the common shapes as constants: few-channel images (1 or 3) and
// square kernels of 3, 4 or 5. With the sizes known the compiler unrolls the
// window's loops; with them in registers (the general call) the same loops
// ran 4-6 times slower (ck_im2col_nhwc on the conv model's first layer:
// 160-250 µs against 30-45). The loops and their order are the same either
// way, so are the values (and col2im's sums).
#define CK_SHAPE_DISPATCH(call, channels, kh, kw)                               \
    do {                                                                        \
        if ((channels) == 1 && (kh) == 3 && (kw) == 3) call(1, 3, 3);           \
        else if ((channels) == 1 && (kh) == 4 && (kw) == 4) call(1, 4, 4);      \
        else if ((channels) == 1 && (kh) == 5 && (kw) == 5) call(1, 5, 5);      \
        else if ((channels) == 3 && (kh) == 3 && (kw) == 3) call(3, 3, 3);      \
        else if ((channels) == 3 && (kh) == 4 && (kw) == 4) call(3, 4, 4);      \
        else if ((channels) == 3 && (kh) == 5 && (kw) == 5) call(3, 5, 5);      \
        else call(channels, kh, kw);                                            \
    } while (0)

// Output lines [first, first + count) of ck_im2col_nhwc's matrix (a line:
// the ow positions of one output row of one image) into `out`.
static inline __attribute__((always_inline)) void im2col_nhwc_lines(
    const float *restrict x, size_t height, size_t width, const size_t channels, const size_t kh, const size_t kw,
    size_t stride, size_t padding, size_t oh, size_t ow, size_t first, size_t count, float *restrict out) {
    const size_t k = channels * kh * kw;
    const long H = (long)height, W = (long)width;
    for (size_t line = first; line < first + count; line++) {
        const size_t b = line / oh, oy = line % oh;
        const float *image = x + b * height * width * channels;
        const long y0 = (long)(oy * stride) - (long)padding;
        for (size_t ox = 0; ox < ow; ox++) {
            const long x0 = (long)(ox * stride) - (long)padding;
            float *row = out + ((line - first) * ow + ox) * k;
            if (y0 >= 0 && x0 >= 0 && y0 + (long)kh <= H && x0 + (long)kw <= W) {
                // The whole window is inside the image: no bounds checks.
                for (size_t i = 0; i < kh; i++) {
                    const float *source = image + ((size_t)y0 + i) * width * channels + (size_t)x0 * channels;
                    for (size_t j = 0; j < kw; j++)
                        for (size_t c = 0; c < channels; c++) row[(c * kh + i) * kw + j] = source[j * channels + c];
                }
                continue;
            }
            for (size_t i = 0; i < kh; i++) {
                const long iy = y0 + (long)i;
                for (size_t j = 0; j < kw; j++) {
                    const long ix = x0 + (long)j;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                        const float *pixel = image + ((size_t)iy * width + (size_t)ix) * channels;
                        for (size_t c = 0; c < channels; c++) row[(c * kh + i) * kw + j] = pixel[c];
                    } else {
                        for (size_t c = 0; c < channels; c++) row[(c * kh + i) * kw + j] = 0.0f;
                    }
                }
            }
        }
    }
}

static void im2col_nhwc_lines_any(const float *restrict x, size_t height, size_t width, size_t channels, size_t kh,
                                  size_t kw, size_t stride, size_t padding, size_t oh, size_t ow, size_t first,
                                  size_t count, float *restrict out) {
#define CK_IM2COL_LINES(C, KH, KW) \
    im2col_nhwc_lines(x, height, width, C, KH, KW, stride, padding, oh, ow, first, count, out)
    CK_SHAPE_DISPATCH(CK_IM2COL_LINES, channels, kh, kw);
#undef CK_IM2COL_LINES
}

void ck_im2col_nhwc(const float *restrict x, size_t batch, size_t height, size_t width, size_t channels,
                    size_t kh, size_t kw, size_t stride, size_t padding, size_t oh, size_t ow, float *restrict cols) {
    im2col_nhwc_lines_any(x, height, width, channels, kh, kw, stride, padding, oh, ow, 0, batch * oh, cols);
}

void ck_im2col_nhwc_bf16(const float *restrict x, size_t batch, size_t height, size_t width, size_t channels,
                         size_t kh, size_t kw, size_t stride, size_t padding, size_t oh, size_t ow,
                         uint16_t *restrict cols) {
    // Output lines gathered in f32 into a block that stays in L1, and
    // rounded from there, as ck_f32_to_bf16 rounds them in the whole matrix.
    enum { BLOCK_FLOATS = 4096 };
    const size_t k = channels * kh * kw, line_floats = ow * k, total = batch * oh * line_floats;
    if (total == 0) return;
    const size_t lines = line_floats <= BLOCK_FLOATS ? BLOCK_FLOATS / line_floats : 1;
    float small[BLOCK_FLOATS];
    float *block = line_floats <= BLOCK_FLOATS ? small : malloc(line_floats * sizeof(float));
    if (!block) abort();
    for (size_t line = 0; line < batch * oh; line += lines) {
        const size_t n = batch * oh - line < lines ? batch * oh - line : lines;
        im2col_nhwc_lines_any(x, height, width, channels, kh, kw, stride, padding, oh, ow, line, n, block);
        ck_f32_to_bf16_part(block, cols + line * line_floats, n * line_floats, line * line_floats, total);
    }
    if (block != small) free(block);
}

static inline __attribute__((always_inline)) void col2im_nhwc(
    const float *restrict cols, size_t batch, size_t height, size_t width, const size_t channels, const size_t kh,
    const size_t kw, size_t stride, size_t padding, size_t oh, size_t ow, float *restrict dx) {
    const size_t k = channels * kh * kw;
    const long H = (long)height, W = (long)width;
    memset(dx, 0, batch * height * width * channels * sizeof(float));
    for (size_t b = 0; b < batch; b++) {
        float *image = dx + b * height * width * channels;
        for (size_t oy = 0; oy < oh; oy++) {
            const long y0 = (long)(oy * stride) - (long)padding;
            for (size_t ox = 0; ox < ow; ox++) {
                const long x0 = (long)(ox * stride) - (long)padding;
                const float *row = cols + ((b * oh + oy) * ow + ox) * k;
                for (size_t i = 0; i < kh; i++) {
                    const long iy = y0 + (long)i;
                    if (iy < 0 || iy >= H) continue;
                    for (size_t j = 0; j < kw; j++) {
                        const long ix = x0 + (long)j;
                        if (ix < 0 || ix >= W) continue;
                        float *pixel = image + ((size_t)iy * width + (size_t)ix) * channels;
                        for (size_t c = 0; c < channels; c++) pixel[c] += row[(c * kh + i) * kw + j];
                    }
                }
            }
        }
    }
}

void ck_col2im_nhwc(const float *restrict cols, size_t batch, size_t height, size_t width, size_t channels,
                    size_t kh, size_t kw, size_t stride, size_t padding, size_t oh, size_t ow, float *restrict dx) {
#define CK_COL2IM(C, KH, KW) col2im_nhwc(cols, batch, height, width, C, KH, KW, stride, padding, oh, ow, dx)
    CK_SHAPE_DISPATCH(CK_COL2IM, channels, kh, kw);
#undef CK_COL2IM
}

static inline float bf16_widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

void ck_bf16_to_f32(const uint16_t *restrict s, float *restrict d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = bf16_widen(s[i]);
}

void ck_sum_bf16_blocks(const uint16_t *restrict blocks, size_t ranks, size_t n, uint16_t *restrict out) {
    enum { CHUNK = 1024 };
    float sums[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (size_t i = 0; i < m; i++) sums[i] = bf16_widen(blocks[i0 + i]);
        for (size_t r = 1; r < ranks; r++) {
            const uint16_t *block = blocks + r * n + i0;
            for (size_t i = 0; i < m; i++) sums[i] += bf16_widen(block[i]);
        }
        ck_f32_to_bf16(sums, out + i0, m);
    }
}

static void adam_bf16_portable(float *restrict p, const uint16_t *restrict g, float *restrict m, float *restrict v,
                               size_t n, ck_adam_constants c) {
    enum { CHUNK = 512 };
    float wide[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t k = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (size_t i = 0; i < k; i++) wide[i] = bf16_widen(g[i0 + i]);
        adam_portable(p + i0, wide, m + i0, v + i0, k, c);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static void adam_bf16_avx512(float *restrict p, const uint16_t *restrict g, float *restrict m, float *restrict v,
                             size_t n, ck_adam_constants c) {
    const __m512 scale = _mm512_set1_ps(c.gradient_scale), omb1 = _mm512_set1_ps(c.one_minus_beta1);
    const __m512 b2 = _mm512_set1_ps(c.beta2), omb2 = _mm512_set1_ps(c.one_minus_beta2);
    const __m512 step = _mm512_set1_ps(c.step_size), ibc2 = _mm512_set1_ps(c.inverse_bias_correction2_sqrt);
    const __m512 eps = _mm512_set1_ps(c.epsilon);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(g + i)));
        __m512 gi = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(h, 16)), scale);
        __m512 mo = _mm512_loadu_ps(m + i), vo = _mm512_loadu_ps(v + i);
        __m512 mi = _mm512_add_ps(mo, _mm512_mul_ps(omb1, _mm512_sub_ps(gi, mo)));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(vo, b2), _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        __m512 denominator = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), ibc2), eps);
        __m512 update = _mm512_mul_ps(step, _mm512_div_ps(mi, denominator));
        _mm512_storeu_ps(p + i, _mm512_sub_ps(_mm512_loadu_ps(p + i), update));
    }
    adam_bf16_portable(p + i, g + i, m + i, v + i, n - i, c);
}
#endif

void ck_adam_update_bf16_gradient(float *p, const uint16_t *g, float *m, float *v, size_t n, ck_adam_constants c) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) {
        adam_bf16_avx512(p, g, m, v, n, c);
        return;
    }
#endif
    adam_bf16_portable(p, g, m, v, n, c);
}

// Fixed point for --reproducible's exact gradient sums. Adding 1.5·2^52 to a
// double of magnitude below 2^51 leaves round-half-even(x) in the low bits of
// the sum's representation (the FPU does the rounding; it vectorizes with AVX2).
static const double fixed_point_magic = 6755399441055744.0;

void ck_fixed_point_accumulate(const float *restrict x, size_t n, double scale, int64_t *restrict acc) {
    int64_t magic_bits;
    memcpy(&magic_bits, &fixed_point_magic, sizeof magic_bits);
    for (size_t i = 0; i < n; i++) {
        double t = (double)x[i] * scale + fixed_point_magic;
        int64_t bits;
        memcpy(&bits, &t, sizeof bits);
        acc[i] += bits - magic_bits;
    }
}

void ck_fixed_point_to_float(const int64_t *restrict acc, size_t n, double inverse_scale, float *restrict out) {
    for (size_t i = 0; i < n; i++) out[i] = (float)((double)acc[i] * inverse_scale);
}

float ck_max_abs(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    return m;
}

void ck_add_in_place(float *restrict a, const float *restrict b, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

// MARK: - the first layer on sparse rows
//
// Both products work on blocks of SPARSE_BLOCK = 32 outputs o0 … o0 + 31:
// the block's weights transposed into a (D, 32) tile, so that each nonzero
// x[r, j] meets one contiguous row of 32 weights (or of 32 gradient sums),
// kept in cache. The vector lanes are different outputs, never parts of one
// sum, so the AVX-512 and the portable paths give the same bits:
// - forward: y[r, o] = (e + d) + bias[o], where e and d are the fused
//   multiply-add sums of the row's nonzeros at even and at odd positions
//   (CSR order), two chains that the processor overlaps;
// - weight gradient: dw[o, j] = fma over the rows r in order of dy[r, o]·x[r, j],
//   then written (or added to dw).

enum { SPARSE_BLOCK = 32 };

size_t ck_sparse_tile_floats(size_t d) { return d * SPARSE_BLOCK; }

static inline float bf16_rounded(float x) { return bf16_widen(bf16_round(x)); }

void ck_bf16_round_in_place(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bf16_rounded(x[i]);
}

static void sparse_weight_tile_portable(const float *restrict w, size_t d, size_t o0, size_t n, int bf16,
                                        float *restrict tile) {
    for (size_t j = 0; j < d; j++) {
        for (size_t t = 0; t < SPARSE_BLOCK; t++) {
            float v = t < n ? w[(o0 + t) * d + j] : 0;
            tile[j * SPARSE_BLOCK + t] = bf16 ? bf16_rounded(v) : v;
        }
    }
}

static void sparse_linear_portable(const int64_t *starts, const int32_t *columns, const float *values, size_t b,
                                   const float *w, size_t h, size_t d, const float *bias, int relu, int bf16,
                                   float *tile, float *y) {
    for (size_t o0 = 0; o0 < h; o0 += SPARSE_BLOCK) {
        size_t n = h - o0 < SPARSE_BLOCK ? h - o0 : SPARSE_BLOCK;
        sparse_weight_tile_portable(w, d, o0, n, bf16, tile);
        for (size_t r = 0; r < b; r++) {
            float even[SPARSE_BLOCK] = {0}, odd[SPARSE_BLOCK] = {0};
            for (int64_t k = starts[r]; k < starts[r + 1]; k++) {
                const float *row = tile + (size_t)columns[k] * SPARSE_BLOCK;
                float *acc = (k - starts[r]) % 2 == 0 ? even : odd;
                for (size_t t = 0; t < SPARSE_BLOCK; t++) acc[t] = fmaf(values[k], row[t], acc[t]);
            }
            for (size_t t = 0; t < n; t++) {
                float s = (even[t] + odd[t]) + bias[o0 + t];
                y[r * h + o0 + t] = relu ? (s > 0 ? s : 0) : s;
            }
        }
    }
}

static void sparse_weight_gradient_portable(const int64_t *starts, const int32_t *columns, const float *values,
                                            size_t b, const float *dy, size_t h, size_t d, int bf16, int accumulate,
                                            float *tile, float *dw) {
    for (size_t o0 = 0; o0 < h; o0 += SPARSE_BLOCK) {
        size_t n = h - o0 < SPARSE_BLOCK ? h - o0 : SPARSE_BLOCK;
        memset(tile, 0, d * SPARSE_BLOCK * sizeof(float));
        for (size_t r = 0; r < b; r++) {
            float g[SPARSE_BLOCK];
            for (size_t t = 0; t < SPARSE_BLOCK; t++) {
                float v = t < n ? dy[r * h + o0 + t] : 0;
                g[t] = bf16 ? bf16_rounded(v) : v;
            }
            for (int64_t k = starts[r]; k < starts[r + 1]; k++) {
                float *row = tile + (size_t)columns[k] * SPARSE_BLOCK;
                for (size_t t = 0; t < SPARSE_BLOCK; t++) row[t] = fmaf(values[k], g[t], row[t]);
            }
        }
        for (size_t t = 0; t < n; t++) {
            float *out = dw + (o0 + t) * d;
            for (size_t j = 0; j < d; j++) {
                float v = tile[j * SPARSE_BLOCK + t];
                out[j] = accumulate ? out[j] + v : v;
            }
        }
    }
}

#if defined(__x86_64__)
// The bf16 rounding of 16 floats (bf16_round: nearest even, NaNs quieted), as floats.
__attribute__((target("avx512f")))
static inline __m512 bf16_round16(__m512 x) {
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), high);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x00400000)), high));
    return _mm512_castsi512_ps(r);
}

// r[i] ← column i of the 16 × 16 matrix whose rows are r[0 … 15].
__attribute__((target("avx512f")))
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        for (int j = 0; j < 2; j++) {
            r[i + 2 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + j]), _mm512_castps_pd(t[i + j + 2])));
            r[i + 2 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + j]), _mm512_castps_pd(t[i + j + 2])));
        }
    }
    // Now r[4q + k] holds, in each 128-bit lane l, column 4l' + k … of rows 4q … 4q+3: combine lanes.
    for (int k = 0; k < 4; k++) {
        t[k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
        t[4 + k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
        t[8 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
        r[4 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0xDD);
    }
}

__attribute__((target("avx512f")))
static void sparse_weight_tile_avx512(const float *restrict w, size_t d, size_t o0, size_t n, int bf16,
                                      float *restrict tile) {
    for (size_t j0 = 0; j0 < d; j0 += 16) {
        size_t m = d - j0 < 16 ? d - j0 : 16;
        __mmask16 columns = (__mmask16)((1u << m) - 1);
        for (size_t half = 0; half < 2; half++) {
            __m512 r[16];
            for (size_t t = 0; t < 16; t++) {
                size_t o = half * 16 + t;
                r[t] = o < n ? _mm512_maskz_loadu_ps(columns, w + (o0 + o) * d + j0) : _mm512_setzero_ps();
                if (bf16) r[t] = bf16_round16(r[t]);
            }
            transpose16(r);
            for (size_t j = 0; j < m; j++) _mm512_storeu_ps(tile + (j0 + j) * SPARSE_BLOCK + half * 16, r[j]);
        }
    }
}

__attribute__((target("avx512f")))
static void sparse_linear_avx512(const int64_t *starts, const int32_t *columns, const float *values, size_t b,
                                 const float *w, size_t h, size_t d, const float *bias, int relu, int bf16,
                                 float *tile, float *y) {
    for (size_t o0 = 0; o0 < h; o0 += SPARSE_BLOCK) {
        size_t n = h - o0 < SPARSE_BLOCK ? h - o0 : SPARSE_BLOCK;
        __mmask16 m0 = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
        __mmask16 m1 = (__mmask16)(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0);
        sparse_weight_tile_avx512(w, d, o0, n, bf16, tile);
        __m512 b0 = _mm512_maskz_loadu_ps(m0, bias + o0), b1 = _mm512_maskz_loadu_ps(m1, bias + o0 + 16);
        for (size_t r = 0; r < b; r++) {
            __m512 e0 = _mm512_setzero_ps(), e1 = e0, d0 = e0, d1 = e0;
            int64_t k = starts[r], end = starts[r + 1];
            for (; k + 1 < end; k += 2) {
                const float *p = tile + (size_t)columns[k] * SPARSE_BLOCK;
                const float *q = tile + (size_t)columns[k + 1] * SPARSE_BLOCK;
                __m512 u = _mm512_set1_ps(values[k]), v = _mm512_set1_ps(values[k + 1]);
                e0 = _mm512_fmadd_ps(u, _mm512_loadu_ps(p), e0);
                e1 = _mm512_fmadd_ps(u, _mm512_loadu_ps(p + 16), e1);
                d0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(q), d0);
                d1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(q + 16), d1);
            }
            if (k < end) {
                const float *p = tile + (size_t)columns[k] * SPARSE_BLOCK;
                __m512 u = _mm512_set1_ps(values[k]);
                e0 = _mm512_fmadd_ps(u, _mm512_loadu_ps(p), e0);
                e1 = _mm512_fmadd_ps(u, _mm512_loadu_ps(p + 16), e1);
            }
            __m512 s0 = _mm512_add_ps(_mm512_add_ps(e0, d0), b0), s1 = _mm512_add_ps(_mm512_add_ps(e1, d1), b1);
            if (relu) {
                // s > 0 ? s : 0 (NaN → 0), as the portable path.
                s0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s0, _mm512_setzero_ps(), _CMP_GT_OQ), s0);
                s1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s1, _mm512_setzero_ps(), _CMP_GT_OQ), s1);
            }
            _mm512_mask_storeu_ps(y + r * h + o0, m0, s0);
            _mm512_mask_storeu_ps(y + r * h + o0 + 16, m1, s1);
        }
    }
}

__attribute__((target("avx512f")))
static void sparse_weight_gradient_avx512(const int64_t *starts, const int32_t *columns, const float *values,
                                          size_t b, const float *dy, size_t h, size_t d, int bf16, int accumulate,
                                          float *tile, float *dw) {
    for (size_t o0 = 0; o0 < h; o0 += SPARSE_BLOCK) {
        size_t n = h - o0 < SPARSE_BLOCK ? h - o0 : SPARSE_BLOCK;
        __mmask16 m0 = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
        __mmask16 m1 = (__mmask16)(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0);
        memset(tile, 0, d * SPARSE_BLOCK * sizeof(float));
        for (size_t r = 0; r < b; r++) {
            __m512 g0 = _mm512_maskz_loadu_ps(m0, dy + r * h + o0), g1 = _mm512_maskz_loadu_ps(m1, dy + r * h + o0 + 16);
            if (bf16) {
                g0 = bf16_round16(g0);
                g1 = bf16_round16(g1);
            }
            for (int64_t k = starts[r]; k < starts[r + 1]; k++) {
                float *p = tile + (size_t)columns[k] * SPARSE_BLOCK;
                __m512 u = _mm512_set1_ps(values[k]);
                _mm512_storeu_ps(p, _mm512_fmadd_ps(u, g0, _mm512_loadu_ps(p)));
                _mm512_storeu_ps(p + 16, _mm512_fmadd_ps(u, g1, _mm512_loadu_ps(p + 16)));
            }
        }
        for (size_t j0 = 0; j0 < d; j0 += 16) {
            size_t m = d - j0 < 16 ? d - j0 : 16;
            __mmask16 cols = (__mmask16)((1u << m) - 1);
            for (size_t half = 0; half * 16 < n; half++) {
                __m512 r[16];
                for (size_t j = 0; j < 16; j++)
                    r[j] = j < m ? _mm512_loadu_ps(tile + (j0 + j) * SPARSE_BLOCK + half * 16) : _mm512_setzero_ps();
                transpose16(r);
                for (size_t t = 0; t < 16 && half * 16 + t < n; t++) {
                    float *out = dw + (o0 + half * 16 + t) * d + j0;
                    __m512 v = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(cols, out), r[t]) : r[t];
                    _mm512_mask_storeu_ps(out, cols, v);
                }
            }
        }
    }
}

__attribute__((target("avx512f")))
static int64_t dense_to_csr_avx512(const float *x, size_t b, size_t d, size_t limit, int64_t *starts,
                                   int32_t *columns, float *values) {
    size_t count = 0;
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    starts[0] = 0;
    for (size_t r = 0; r < b; r++) {
        const float *row = x + r * d;
        for (size_t j0 = 0; j0 < d; j0 += 16) {
            size_t m = d - j0 < 16 ? d - j0 : 16;
            __mmask16 in = (__mmask16)((1u << m) - 1);
            __m512i v = _mm512_maskz_loadu_epi32(in, row + j0);
            __mmask16 nonzero = _mm512_test_epi32_mask(v, v);
            if (!nonzero) continue;
            size_t c = (size_t)__builtin_popcount(nonzero);
            if (count + c > limit) return -1;
            // Compressed in registers, stored whole (a compressing store to memory is slow on some
            // processors): the arrays have 16 values of slack.
            _mm512_storeu_si512(columns + count,
                                _mm512_maskz_compress_epi32(nonzero, _mm512_add_epi32(lanes, _mm512_set1_epi32((int)j0))));
            _mm512_storeu_si512(values + count, _mm512_maskz_compress_epi32(nonzero, v));
            count += c;
        }
        starts[r + 1] = (int64_t)count;
    }
    return (int64_t)count;
}
#endif

void ck_sparse_linear(const int64_t *starts, const int32_t *columns, const float *values, size_t b, const float *w,
                      size_t h, size_t d, const float *bias, int relu, int bf16, float *tile, float *y) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) {
        sparse_linear_avx512(starts, columns, values, b, w, h, d, bias, relu, bf16, tile, y);
        return;
    }
#endif
    sparse_linear_portable(starts, columns, values, b, w, h, d, bias, relu, bf16, tile, y);
}

void ck_sparse_linear_weight_gradient(const int64_t *starts, const int32_t *columns, const float *values, size_t b,
                                      const float *dy, size_t h, size_t d, int bf16, int accumulate, float *tile,
                                      float *dw) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) {
        sparse_weight_gradient_avx512(starts, columns, values, b, dy, h, d, bf16, accumulate, tile, dw);
        return;
    }
#endif
    sparse_weight_gradient_portable(starts, columns, values, b, dy, h, d, bf16, accumulate, tile, dw);
}

static int64_t dense_to_csr_portable(const float *x, size_t b, size_t d, size_t limit, int64_t *starts,
                                     int32_t *columns, float *values) {
    size_t count = 0;
    starts[0] = 0;
    for (size_t r = 0; r < b; r++) {
        const float *row = x + r * d;
        for (size_t j = 0; j < d; j++) {
            uint32_t bits;
            memcpy(&bits, row + j, 4);
            if (bits == 0) continue;
            if (count == limit) return -1;
            columns[count] = (int32_t)j;
            values[count] = row[j];
            count++;
        }
        starts[r + 1] = (int64_t)count;
    }
    return (int64_t)count;
}

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static size_t count_nonzero_avx512(const float *x, size_t n, size_t limit) {
    size_t count = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_loadu_si512(x + i);
        count += (size_t)__builtin_popcount(_mm512_test_epi32_mask(v, v));
        if (count > limit) return limit + 1;
    }
    for (; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, 4);
        count += bits != 0;
    }
    return count > limit ? limit + 1 : count;
}
#endif

size_t ck_count_nonzero(const float *x, size_t n, size_t limit) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) return count_nonzero_avx512(x, n, limit);
#endif
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, 4);
        count += bits != 0;
        if (count > limit) return limit + 1;
    }
    return count;
}

int64_t ck_dense_to_csr(const float *x, size_t b, size_t d, size_t limit, int64_t *starts, int32_t *columns,
                        float *values) {
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) return dense_to_csr_avx512(x, b, d, limit, starts, columns, values);
#endif
    return dense_to_csr_portable(x, b, d, limit, starts, columns, values);
}

// Test hook: the portable paths, whatever the processor.
void ck_sparse_linear_portable(const int64_t *starts, const int32_t *columns, const float *values, size_t b,
                               const float *w, size_t h, size_t d, const float *bias, int relu, int bf16, float *tile,
                               float *y) {
    sparse_linear_portable(starts, columns, values, b, w, h, d, bias, relu, bf16, tile, y);
}

void ck_sparse_linear_weight_gradient_portable(const int64_t *starts, const int32_t *columns, const float *values,
                                               size_t b, const float *dy, size_t h, size_t d, int bf16,
                                               int accumulate, float *tile, float *dw) {
    sparse_weight_gradient_portable(starts, columns, values, b, dy, h, d, bf16, accumulate, tile, dw);
}

// Philox4x32-10, as RNG.swift's Philox.block.
static inline void philox_block(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1, n3 = (uint32_t)p0;
        c[0] = n0; c[1] = n1; c[2] = n2; c[3] = n3;
    }
}

#if defined(__x86_64__)
// Sixteen blocks, one per 32-bit lane of c0 (counter word 0); c1…c3 are the
// counter's other words. Leaves the four output words in c[0…3].
__attribute__((target("avx512f")))
static inline void philox16(__m512i c[4], uint32_t k0, uint32_t k1) {
    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        // High halves of the 64-bit products: even lanes from one multiply, odd lanes from another.
        __m512i e0 = _mm512_mul_epu32(c[0], m0), o0 = _mm512_mul_epu32(_mm512_srli_epi64(c[0], 32), m0);
        __m512i e1 = _mm512_mul_epu32(c[2], m1), o1 = _mm512_mul_epu32(_mm512_srli_epi64(c[2], 32), m1);
        __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e0, 32), o0);
        __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e1, 32), o1);
        __m512i lo0 = _mm512_mullo_epi32(c[0], m0), lo1 = _mm512_mullo_epi32(c[2], m1);
        __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c[1]), _mm512_set1_epi32((int)k0));
        __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c[3]), _mm512_set1_epi32((int)k1));
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    }
}

__attribute__((target("avx512f")))
static size_t philox_blocks_avx512(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t first,
                                   size_t blocks, uint32_t *out) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    uint32_t words[4][16];
    size_t i = 0;
    for (; i + 16 <= blocks; i += 16) {
        __m512i c[4] = {_mm512_add_epi32(_mm512_set1_epi32((int)(first + (uint32_t)i)), lanes),
                        _mm512_set1_epi32((int)c1), _mm512_set1_epi32((int)c2), _mm512_set1_epi32((int)c3)};
        philox16(c, k0, k1);
        for (int w = 0; w < 4; w++) _mm512_storeu_si512(words[w], c[w]);
        uint32_t *o = out + 4 * i;
        for (int b = 0; b < 16; b++) {
            o[4 * b] = words[0][b]; o[4 * b + 1] = words[1][b]; o[4 * b + 2] = words[2][b]; o[4 * b + 3] = words[3][b];
        }
    }
    return i;
}

__attribute__((target("avx512f")))
static size_t philox_words_at_avx512(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, uint32_t c3,
                                     const int64_t *indices, size_t n, uint32_t *out) {
    uint32_t counters[16], words[4][16];
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int b = 0; b < 16; b++) counters[b] = (uint32_t)((uint64_t)indices[i + b] >> 2);
        __m512i c[4] = {_mm512_loadu_si512(counters), _mm512_set1_epi32((int)c1), _mm512_set1_epi32((int)c2),
                        _mm512_set1_epi32((int)c3)};
        philox16(c, k0, k1);
        for (int w = 0; w < 4; w++) _mm512_storeu_si512(words[w], c[w]);
        for (int b = 0; b < 16; b++) out[i + b] = words[indices[i + b] & 3][b];
    }
    return i;
}
#endif

void ck_philox_blocks(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t first, size_t blocks,
                      uint32_t *out) {
    size_t i = 0;
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) i = philox_blocks_avx512(k0, k1, c1, c2, c3, first, blocks, out);
#endif
    for (; i < blocks; i++) {
        uint32_t c[4] = {first + (uint32_t)i, c1, c2, c3};
        philox_block(c, k0, k1);
        memcpy(out + 4 * i, c, sizeof c);
    }
}

void ck_philox_words_at(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, uint32_t c3, const int64_t *indices,
                        size_t n, uint32_t *out) {
    size_t i = 0;
#if defined(__x86_64__)
    if (ck_cpu_has_avx512f()) i = philox_words_at_avx512(k0, k1, c1, c2, c3, indices, n, out);
#endif
    for (; i < n; i++) {
        uint32_t c[4] = {(uint32_t)((uint64_t)indices[i] >> 2), c1, c2, c3};
        philox_block(c, k0, k1);
        out[i] = c[indices[i] & 3];
    }
}

// MARK: - bf16 products with a narrow dimension (the few-channel convolutions)

// One lane of VDPBF16PS: acc + a_hi·b_hi, then + a_lo·b_lo, each step a
// fused multiply-add rounded to nearest even, subnormal inputs read as zeros
// and subnormal results flushed to zeros of their sign (the instruction
// ignores MXCSR). The portable paths below run this; the AVX-512 paths run
// the instruction.
static inline float bf16_daz(uint16_t h) {
    if ((h & 0x7F80u) == 0) h &= 0x8000u;
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static inline float f32_ftz(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7F800000u) == 0) u &= 0x80000000u;
    memcpy(&x, &u, 4);
    return x;
}

static inline float bf16_dot_pair(float acc, uint16_t a_lo, uint16_t a_hi, uint16_t b_lo, uint16_t b_hi) {
    acc = f32_ftz(fmaf(bf16_daz(a_hi), bf16_daz(b_hi), acc));
    return f32_ftz(fmaf(bf16_daz(a_lo), bf16_daz(b_lo), acc));
}

enum { CK_NARROW_BLOCK = 512 };

// The end of the block of k that starts at k0.
static inline size_t narrow_block_end(size_t k0, size_t k) {
    return k0 + CK_NARROW_BLOCK < k ? k0 + CK_NARROW_BLOCK : k;
}

// Σ_i x[i·sx]·y[i·sy] over i < n by the narrow kernels' rule: blocks of
// 512, each summed from zero in VDPBF16PS's pairs, the block sums added in order.
static float bf16_dot_blocks(const uint16_t *x, size_t sx, const uint16_t *y, size_t sy, size_t n) {
    float total = 0;
    for (size_t k0 = 0; k0 < n; k0 += CK_NARROW_BLOCK) {
        const size_t k1 = narrow_block_end(k0, n);
        float acc = 0;
        for (size_t i = k0; i < k1; i += 2) {
            const int pair = i + 1 < k1;
            acc = bf16_dot_pair(acc, x[i * sx], pair ? x[(i + 1) * sx] : 0, y[i * sy], pair ? y[(i + 1) * sy] : 0);
        }
        total = k0 == 0 ? acc : total + acc;
    }
    return total;
}

static void bf16_gemm_narrow_k_portable(const uint16_t *restrict a, size_t m, size_t k, const uint16_t *restrict b,
                                        size_t b_k_stride, size_t b_n_stride, size_t n, const float *restrict bias,
                                        int relu, float *restrict c, size_t ldc) {
    for (size_t r = 0; r < m; r++) {
        for (size_t o = 0; o < n; o++) {
            float total = bf16_dot_blocks(a + r * k, 1, b + o * b_n_stride, b_k_stride, k);
            if (bias) total = total + bias[o];
            if (relu) total = total > 0 ? total : 0.0f;
            c[r * ldc + o] = total;
        }
    }
}

static void bf16_gemm_tn_narrow_portable(const uint16_t *restrict a, size_t k, size_t m, size_t lda,
                                         const uint16_t *restrict b, size_t n, size_t ldb, float *restrict c,
                                         size_t ldc) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) c[i * ldc + j] = bf16_dot_blocks(a + i, lda, b + j, ldb, k);
}

#if defined(__x86_64__)
#define CK_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
// Loops over registers: unrolled whole, so that their arrays are registers.
#define CK_UNROLL _Pragma("unroll")
// Register tiles (arrays whose used sizes R×C are constants at each call):
// filled with a value; and the running total over blocks of k (the first
// block's sums, then the total plus each next block's).
#define CK_TILE_FILL(tile, R, C, value)                                      \
    CK_UNROLL for (int r_ = 0; r_ < (R); r_++) CK_UNROLL for (int c_ = 0; c_ < (C); c_++) (tile)[r_][c_] = (value)
#define CK_TILE_ADD_BLOCK(total, acc, R, C, first)                          \
    CK_UNROLL for (int r_ = 0; r_ < (R); r_++) CK_UNROLL for (int c_ = 0; c_ < (C); c_++) \
        (total)[r_][c_] = (first) ? (acc)[r_][c_] : _mm512_add_ps((total)[r_][c_], (acc)[r_][c_])

// R rows of C by NC 16-lane chunks of its columns, all in registers (the
// sizes are constants at each call, so the arrays are registers).
CK_BF16_TARGET static inline __attribute__((always_inline)) void narrow_k_rows(
    const uint16_t *restrict a, size_t k, const uint32_t *restrict packed, size_t chunks, size_t j0, size_t n,
    const float *restrict bias, int relu, float *restrict c, size_t ldc, const int R, const int NC) {
    const __m512 zero = _mm512_setzero_ps();
    __m512 total[4][4], acc[4][4];  // [R][NC] used (fixed sizes: VLAs would live in memory)
    CK_TILE_FILL(total, R, NC, zero);
    for (size_t k0 = 0; k0 < k; k0 += CK_NARROW_BLOCK) {
        const size_t k1 = narrow_block_end(k0, k);
        CK_TILE_FILL(acc, R, NC, zero);
        for (size_t i = k0; i < k1; i += 2) {
            const uint32_t *w = packed + ((i / 2) * chunks + j0) * 16;
            __m512bh wv[4];
            CK_UNROLL
            for (int j = 0; j < NC; j++) wv[j] = (__m512bh)_mm512_load_si512(w + 16 * j);
            CK_UNROLL
            for (int r = 0; r < R; r++) {
                uint32_t word;
                if (i + 1 < k1) memcpy(&word, a + r * k + i, 4);
                else word = a[r * k + i];
                const __m512bh x = (__m512bh)_mm512_set1_epi32((int)word);
                CK_UNROLL
                for (int j = 0; j < NC; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wv[j], x);
            }
        }
        CK_TILE_ADD_BLOCK(total, acc, R, NC, k0 == 0);
    }
    CK_UNROLL
    for (int j = 0; j < NC; j++) {
        const size_t o = (j0 + j) * 16, lanes = n - o < 16 ? n - o : 16;
        const __mmask16 mask = (__mmask16)((1u << lanes) - 1);
        const __m512 add = bias ? _mm512_maskz_loadu_ps(mask, bias + o) : zero;
        CK_UNROLL
        for (int r = 0; r < R; r++) {
            __m512 v = total[r][j];
            if (bias) v = _mm512_add_ps(v, add);
            if (relu) v = _mm512_max_ps(v, zero);
            _mm512_mask_storeu_ps(c + r * ldc + o, mask, v);
        }
    }
}

// B's pairs packed once per call, lane by lane, as VDPBF16PS takes them;
// then rows of C a few at a time, up to four 16-lane chunks of columns.
CK_BF16_TARGET
static void bf16_gemm_narrow_k_avx512(const uint16_t *restrict a, size_t m, size_t k, const uint16_t *restrict b,
                                      size_t b_k_stride, size_t b_n_stride, size_t n, const float *restrict bias,
                                      int relu, float *restrict c, size_t ldc) {
    const size_t pairs = (k + 1) / 2, chunks = (n + 15) / 16;
    uint32_t *packed = aligned_alloc(64, (pairs * chunks * 16 * sizeof(uint32_t) + 63) / 64 * 64);
    if (!packed) abort();
    for (size_t i = 0; i < pairs; i++) {
        for (size_t o = 0; o < chunks * 16; o++) {
            uint32_t lo = 0, hi = 0;
            if (o < n) {
                lo = b[2 * i * b_k_stride + o * b_n_stride];
                // A pair never straddles a block (blocks are even), only the end.
                if (2 * i + 1 < k) hi = b[(2 * i + 1) * b_k_stride + o * b_n_stride];
            }
            packed[(i * chunks + o / 16) * 16 + o % 16] = lo | hi << 16;
        }
    }
    for (size_t j0 = 0; j0 < chunks; j0 += 4) {
        const size_t nc = chunks - j0 < 4 ? chunks - j0 : 4;
        size_t r = 0;
#define CK_NARROW_ROWS(R, NC)                                                                               \
    for (; r + R <= m; r += R) narrow_k_rows(a + r * k, k, packed, chunks, j0, n, bias, relu, c + r * ldc, ldc, R, NC); \
    for (; r < m; r++) narrow_k_rows(a + r * k, k, packed, chunks, j0, n, bias, relu, c + r * ldc, ldc, 1, NC)
        switch (nc) {
        case 1: CK_NARROW_ROWS(4, 1); break;
        case 2: CK_NARROW_ROWS(4, 2); break;
        case 3: CK_NARROW_ROWS(2, 3); break;
        default: CK_NARROW_ROWS(2, 4); break;
        }
#undef CK_NARROW_ROWS
    }
    free(packed);
}

// MC 16-lane chunks of C's rows (A's columns) by NJ of its columns, all in
// registers. Each pair of A's rows is interleaved by one VPERMW per chunk;
// B's pairs come packed (bp: word (p/2)·n + j holds b[p, j] | b[p+1, j] << 16).
CK_BF16_TARGET static inline __attribute__((always_inline)) void tn_narrow_tile(
    const uint16_t *restrict a, size_t k, size_t lda, size_t i0, size_t m, const uint32_t *restrict bp, size_t n,
    size_t j0, float *restrict c, size_t ldc, const int MC, const int NJ) {
    uint16_t order[32];
    for (int l = 0; l < 16; l++) order[2 * l] = (uint16_t)l, order[2 * l + 1] = (uint16_t)(32 + l);
    const __m512i interleave = _mm512_loadu_si512(order);
    const __m512 zero = _mm512_setzero_ps();
    __mmask32 mask[2];
    CK_UNROLL
    for (int h = 0; h < MC; h++) {
        const size_t first = i0 + 16 * (size_t)h, lanes = first >= m ? 0 : (m - first < 16 ? m - first : 16);
        mask[h] = (__mmask32)((1u << lanes) - 1);
    }
    __m512 total[2][12], acc[2][12];  // [MC][NJ] used (fixed sizes: VLAs would live in memory)
    CK_TILE_FILL(total, MC, NJ, zero);
    for (size_t k0 = 0; k0 < k; k0 += CK_NARROW_BLOCK) {
        const size_t k1 = narrow_block_end(k0, k);
        CK_TILE_FILL(acc, MC, NJ, zero);
        for (size_t p = k0; p < k1; p += 2) {
            const int pair = p + 1 < k1;
            __m512bh x[2];
            CK_UNROLL
            for (int h = 0; h < MC; h++) {
                const uint16_t *row = a + p * lda + i0 + 16 * (size_t)h;
                const __m512i r0 = _mm512_maskz_loadu_epi16(mask[h], row);
                const __m512i r1 = pair ? _mm512_maskz_loadu_epi16(mask[h], row + lda) : _mm512_setzero_si512();
                x[h] = (__m512bh)_mm512_permutex2var_epi16(r0, interleave, r1);
            }
            const uint32_t *w = bp + (p / 2) * n + j0;
            CK_UNROLL
            for (int j = 0; j < NJ; j++) {
                const __m512bh y = (__m512bh)_mm512_set1_epi32((int)w[j]);
                CK_UNROLL
                for (int h = 0; h < MC; h++) acc[h][j] = _mm512_dpbf16_ps(acc[h][j], x[h], y);
            }
        }
        CK_TILE_ADD_BLOCK(total, acc, MC, NJ, k0 == 0);
    }
    CK_UNROLL
    for (int h = 0; h < MC; h++) {
        CK_UNROLL
        for (int j = 0; j < NJ; j++) {
            float lane[16];
            _mm512_storeu_ps(lane, total[h][j]);
            for (size_t l = 0; l < 16 && i0 + 16 * (size_t)h + l < m; l++) c[(i0 + 16 * (size_t)h + l) * ldc + j0 + j] = lane[l];
        }
    }
}

CK_BF16_TARGET
static void bf16_gemm_tn_narrow_avx512(const uint16_t *restrict a, size_t k, size_t m, size_t lda,
                                       const uint16_t *restrict b, size_t n, size_t ldb, float *restrict c,
                                       size_t ldc) {
    const size_t pairs = (k + 1) / 2;
    uint32_t *bp = malloc((pairs * n + 1) * sizeof(uint32_t));
    if (!bp) abort();
    for (size_t q = 0; q < pairs; q++) {
        const uint16_t *b0 = b + 2 * q * ldb, *b1 = b0 + ldb;
        const int pair = 2 * q + 1 < k;
        for (size_t j = 0; j < n; j++) bp[q * n + j] = b0[j] | (pair ? (uint32_t)b1[j] << 16 : 0);
    }
    for (size_t i0 = 0; i0 < m; i0 += 32) {
        const int two = m - i0 > 16;
        for (size_t j0 = 0; j0 < n; j0 += 12) {
            const size_t nj = n - j0 < 12 ? n - j0 : 12;
#define CK_TN_CASE(NJ) \
    case NJ: two ? tn_narrow_tile(a, k, lda, i0, m, bp, n, j0, c, ldc, 2, NJ) : tn_narrow_tile(a, k, lda, i0, m, bp, n, j0, c, ldc, 1, NJ); break
            switch (nj) {
                CK_TN_CASE(1); CK_TN_CASE(2); CK_TN_CASE(3); CK_TN_CASE(4); CK_TN_CASE(5); CK_TN_CASE(6);
                CK_TN_CASE(7); CK_TN_CASE(8); CK_TN_CASE(9); CK_TN_CASE(10); CK_TN_CASE(11); default: CK_TN_CASE(12);
            }
#undef CK_TN_CASE
        }
    }
    free(bp);
}
#endif

void ck_bf16_gemm_narrow_k(const uint16_t *a, size_t m, size_t k, const uint16_t *b, size_t b_k_stride,
                           size_t b_n_stride, size_t n, const float *bias, int relu, float *c, size_t ldc) {
    if (m == 0 || n == 0) return;
#if defined(__x86_64__)
    if (ck_cpu_has_avx512_bf16()) {
        bf16_gemm_narrow_k_avx512(a, m, k, b, b_k_stride, b_n_stride, n, bias, relu, c, ldc);
        return;
    }
#endif
    bf16_gemm_narrow_k_portable(a, m, k, b, b_k_stride, b_n_stride, n, bias, relu, c, ldc);
}

void ck_bf16_gemm_narrow_k_portable(const uint16_t *a, size_t m, size_t k, const uint16_t *b, size_t b_k_stride,
                                    size_t b_n_stride, size_t n, const float *bias, int relu, float *c, size_t ldc) {
    bf16_gemm_narrow_k_portable(a, m, k, b, b_k_stride, b_n_stride, n, bias, relu, c, ldc);
}

void ck_bf16_gemm_tn_narrow(const uint16_t *a, size_t k, size_t m, size_t lda, const uint16_t *b, size_t n,
                            size_t ldb, float *c, size_t ldc) {
    if (m == 0 || n == 0) return;
#if defined(__x86_64__)
    if (ck_cpu_has_avx512_bf16()) {
        bf16_gemm_tn_narrow_avx512(a, k, m, lda, b, n, ldb, c, ldc);
        return;
    }
#endif
    bf16_gemm_tn_narrow_portable(a, k, m, lda, b, n, ldb, c, ldc);
}

void ck_bf16_gemm_tn_narrow_portable(const uint16_t *a, size_t k, size_t m, size_t lda, const uint16_t *b, size_t n,
                                     size_t ldb, float *c, size_t ldc) {
    bf16_gemm_tn_narrow_portable(a, k, m, lda, b, n, ldb, c, ldc);
}
