// Control of the CPU's handling of subnormal floats.
//
// Late in training, Adam's second moments and some gradients fall below
// FLT_MIN; arithmetic on subnormals is ~100x slower on x86, and a step of the
// MLP VAE slowed by a third from epoch 3 on. Flushing them to zero (FTZ: results,
// DAZ: inputs) is what torch.set_flush_denormal(True) does.
#ifndef VAE_MPI_FLOAT_CONTROL_H
#define VAE_MPI_FLOAT_CONTROL_H

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static inline void float_control_flush_subnormals(int enable) {
    unsigned int csr = _mm_getcsr();
    csr = enable ? (csr | 0x8040u) : (csr & ~0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
    _mm_setcsr(csr);
}
#elif defined(__aarch64__)
static inline void float_control_flush_subnormals(int enable) {
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    fpcr = enable ? (fpcr | (1ul << 24)) : (fpcr & ~(1ul << 24));  // FZ
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
}
#else
static inline void float_control_flush_subnormals(int enable) { (void)enable; }
#endif

#endif
