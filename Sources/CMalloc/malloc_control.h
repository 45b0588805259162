// glibc's allocator tuning (mallopt), which Swift's Glibc module does not import.
#ifndef VAE_MPI_MALLOC_CONTROL_H
#define VAE_MPI_MALLOC_CONTROL_H

#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#include <limits.h>
/// Serve large blocks from the heap and never trim it, so memory freed at the
/// end of a training step is reused by the next one instead of being
/// unmapped and page-faulted back in.
static inline void malloc_control_keep_freed_memory(void) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
}
#else
static inline void malloc_control_keep_freed_memory(void) {}
#endif

#endif
