// OpenBLAS's CBLAS interface (pkg-config `openblas`; Debian: libopenblas-dev).
// `openblas_set_num_threads` is declared by OpenBLAS's cblas.h.
#include <cblas.h>
