#ifndef VAE_MPI_H5READER_H
#define VAE_MPI_H5READER_H

// A small C layer over libhdf5 for vae-mpi's HDF5 input: HDF5's type ids
// are C macros that Swift cannot import. Every function turns off
// libhdf5's own error printing and writes a sentence into `error` instead.

#ifdef __cplusplus
extern "C" {
#endif

enum { VAE_H5_MAX_RANK = 8 };

typedef struct {
    int rank;
    long long dims[VAE_H5_MAX_RANK];
    /// 0 integer, 1 float; anything else is refused.
    int type_class;
    /// Bytes per element, and whether integers are signed.
    int size;
    int is_signed;
    /// 1 if the dataset is stored in chunks (read whole), 0 contiguous.
    int chunked;
    /// 1 if a filter (compression) is on.
    int filtered;
    /// Byte offset of a contiguous, unfiltered dataset's data in the file,
    /// or -1 when it has none (chunked, or never written).
    long long offset;
    /// 1 for little-endian elements.
    int little_endian;
} vae_h5_info;

/// 0 on success; otherwise -1 and a message in `error`.
int vae_h5_describe(const char *file, const char *dataset, vae_h5_info *info, char *error, int error_size);

/// Reads rows [first, first + count) of the first dimension, converted to
/// `mode`: 0 unsigned bytes, 1 float32, 2 int64. 0 on success.
int vae_h5_read_rows(const char *file, const char *dataset, long long first, long long count, int mode, void *out,
                     char *error, int error_size);

/// 1 if `file` is an HDF5 file, 0 if not, -1 if it cannot be read.
int vae_h5_is_hdf5(const char *file);

#ifdef __cplusplus
}
#endif
#endif
