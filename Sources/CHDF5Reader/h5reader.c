#include "h5reader.h"

#include <hdf5.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

// libhdf5 parses the file itself, and Debian bookworm's 1.10.8 dereferences
// bad pointers on some damaged files (Fuzz/library-crashes/hdf5). Every entry
// point below runs under a guard: a SIGSEGV or SIGBUS inside it, on the
// calling thread, jumps back and becomes an error naming the file, instead of
// ending the process. The library's state is then unknown, so every later
// call in the process is refused (the run is ending with that error anyway),
// and the library is told not to tidy up at exit (H5dont_atexit), which would
// walk that state again. A fault on another thread, or outside a call, goes
// to the handler that was there before.
static __thread sigjmp_buf *guard_jump;
static struct sigaction previous_segv, previous_bus;
static int poisoned;

static void guard_handler(int signal, siginfo_t *info, void *context) {
    (void)info;
    (void)context;
    if (guard_jump) siglongjmp(*guard_jump, signal);
    // Not a fault inside a guarded call: restore what was there; returning
    // re-runs the faulting instruction under it.
    sigaction(signal, signal == SIGSEGV ? &previous_segv : &previous_bus, NULL);
}

static void guard_begin(sigjmp_buf *jump) {
    static int once;
    if (!once) {
        once = 1;
        H5dont_atexit();
    }
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = guard_handler;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous_segv);
    sigaction(SIGBUS, &action, &previous_bus);
    guard_jump = jump;
}

static void guard_end(void) {
    guard_jump = NULL;
    sigaction(SIGSEGV, &previous_segv, NULL);
    sigaction(SIGBUS, &previous_bus, NULL);
}

static void crashed(int signal, char *error, int size) {
    poisoned = 1;
    snprintf(error, size, "libhdf5 crashed reading it (%s inside the library): the file is damaged "
             "(check it with h5dump -H)", signal == SIGBUS ? "SIGBUS" : "SIGSEGV");
}

static int refused(char *error, int size) {
    snprintf(error, size, "not read: libhdf5 crashed on a damaged file earlier in this process");
    return -1;
}

// Runs `body` (a call of an unguarded function, assigned to `result`) under the guard.
#define GUARDED(result, error, size, body)                                         \
    do {                                                                           \
        if (poisoned) { result = refused(error, size); break; }                    \
        sigjmp_buf jump;                                                           \
        int signal_ = sigsetjmp(jump, 1);                                          \
        if (signal_ != 0) {                                                        \
            guard_end();                                                           \
            crashed(signal_, error, size);                                         \
            result = -1;                                                           \
            break;                                                                 \
        }                                                                          \
        guard_begin(&jump);                                                        \
        result = (body);                                                           \
        guard_end();                                                               \
    } while (0)

static int is_hdf5(const char *file) {
    quiet();
    htri_t r = H5Fis_hdf5(file);
    return r > 0 ? 1 : r == 0 ? 0 : -1;
}

/// Opens file and dataset; on failure writes why and returns -1.
static int open_dataset(const char *file, const char *dataset, hid_t *f, hid_t *d, char *error, int size) {
    quiet();
    *f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*f < 0) {
        snprintf(error, size, "cannot be opened as an HDF5 file");
        return -1;
    }
    // Walk the path so that a missing group is named.
    char partial[4096];
    size_t n = strlen(dataset);
    if (n == 0 || dataset[0] != '/' || n >= sizeof(partial)) {
        snprintf(error, size, "'%s' is not an absolute path to a dataset (like /images)", dataset);
        H5Fclose(*f);
        return -1;
    }
    for (size_t i = 1; i <= n; i++) {
        if (i == n || dataset[i] == '/') {
            memcpy(partial, dataset, i);
            partial[i] = 0;
            if (H5Lexists(*f, partial, H5P_DEFAULT) <= 0) {
                snprintf(error, size, "has no %s", partial);
                H5Fclose(*f);
                return -1;
            }
        }
    }
    // The same calls in libhdf5 1.10 (Debian bookworm) and later: open the object, ask what it is.
    hid_t object = H5Oopen(*f, dataset, H5P_DEFAULT);
    H5I_type_t kind = object < 0 ? H5I_BADID : H5Iget_type(object);
    if (object >= 0) H5Oclose(object);
    if (kind != H5I_DATASET) {
        snprintf(error, size, "%s is %s, not a dataset", dataset, kind == H5I_GROUP ? "a group" : "another kind of object");
        H5Fclose(*f);
        return -1;
    }
    *d = H5Dopen2(*f, dataset, H5P_DEFAULT);
    if (*d < 0) {
        snprintf(error, size, "%s cannot be opened", dataset);
        H5Fclose(*f);
        return -1;
    }
    return 0;
}

static int describe(const char *file, const char *dataset, vae_h5_info *info, char *error, int error_size) {
    hid_t f, d;
    if (open_dataset(file, dataset, &f, &d, error, error_size) < 0) return -1;
    int status = -1;
    hid_t space = H5Dget_space(d), type = H5Dget_type(d), plist = H5Dget_create_plist(d);
    memset(info, 0, sizeof(*info));
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (rank < 1 || rank > VAE_H5_MAX_RANK) {
        snprintf(error, error_size, "%s has %d dimensions (samples need 2 to 4)", dataset, rank);
        goto done;
    }
    hsize_t dims[VAE_H5_MAX_RANK];
    H5Sget_simple_extent_dims(space, dims, NULL);
    info->rank = rank;
    for (int i = 0; i < rank; i++) info->dims[i] = (long long)dims[i];
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_INTEGER) {
        info->type_class = 0;
        info->is_signed = H5Tget_sign(type) == H5T_SGN_2;
    } else if (cls == H5T_FLOAT) {
        info->type_class = 1;
        info->is_signed = 1;
    } else {
        const char *what = cls == H5T_STRING ? "strings" : cls == H5T_COMPOUND ? "compound records"
            : cls == H5T_ENUM ? "enumerations" : cls == H5T_ARRAY ? "arrays" : "another type";
        snprintf(error, error_size, "%s holds %s: samples are integers or floats", dataset, what);
        goto done;
    }
    info->size = (int)H5Tget_size(type);
    info->little_endian = H5Tget_order(type) == H5T_ORDER_LE;
    if (info->size != 1 && info->size != 2 && info->size != 4 && info->size != 8) {
        snprintf(error, error_size, "%s has %d-byte elements", dataset, info->size);
        goto done;
    }
    if (cls == H5T_FLOAT && info->size < 4) {
        snprintf(error, error_size, "%s has %d-byte floats (float32 and float64 are read)", dataset, info->size);
        goto done;
    }
    info->chunked = H5Pget_layout(plist) == H5D_CHUNKED;
    info->filtered = H5Pget_nfilters(plist) > 0;
    haddr_t offset = H5Dget_offset(d);
    info->offset = (!info->chunked && !info->filtered && offset != HADDR_UNDEF) ? (long long)offset : -1;
    status = 0;
done:
    if (plist >= 0) H5Pclose(plist);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    return status;
}

static int read_rows(const char *file, const char *dataset, long long first, long long count, int mode, void *out,
                     char *error, int error_size) {
    hid_t f, d;
    if (open_dataset(file, dataset, &f, &d, error, error_size) < 0) return -1;
    int status = -1;
    hid_t space = H5Dget_space(d), memspace = -1;
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[VAE_H5_MAX_RANK], start[VAE_H5_MAX_RANK] = {0}, counts[VAE_H5_MAX_RANK];
    if (rank < 1 || rank > VAE_H5_MAX_RANK) {
        snprintf(error, error_size, "%s has %d dimensions", dataset, rank);
        goto done;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    if (first < 0 || count < 0 || (hsize_t)(first + count) > dims[0]) {
        snprintf(error, error_size, "rows %lld..%lld are outside %s's %llu", first, first + count, dataset,
                 (unsigned long long)dims[0]);
        goto done;
    }
    if (count == 0) { status = 0; goto done; }
    for (int i = 0; i < rank; i++) counts[i] = dims[i];
    start[0] = (hsize_t)first;
    counts[0] = (hsize_t)count;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, counts, NULL);
    memspace = H5Screate_simple(rank, counts, NULL);
    hid_t memtype = mode == 0 ? H5T_NATIVE_UCHAR : mode == 1 ? H5T_NATIVE_FLOAT : H5T_NATIVE_LLONG;
    if (H5Dread(d, memtype, memspace, space, H5P_DEFAULT, out) < 0) {
        snprintf(error, error_size, "%s could not be read (rows %lld..%lld): a damaged file, or values that do not convert",
                 dataset, first, first + count);
        goto done;
    }
    status = 0;
done:
    if (memspace >= 0) H5Sclose(memspace);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    return status;
}

int vae_h5_is_hdf5(const char *file) {
    char error[256];
    int result;
    GUARDED(result, error, (int)sizeof(error), is_hdf5(file));
    return result;
}

int vae_h5_describe(const char *file, const char *dataset, vae_h5_info *info, char *error, int error_size) {
    int result;
    GUARDED(result, error, error_size, describe(file, dataset, info, error, error_size));
    return result;
}

int vae_h5_read_rows(const char *file, const char *dataset, long long first, long long count, int mode, void *out,
                     char *error, int error_size) {
    int result;
    GUARDED(result, error, error_size, read_rows(file, dataset, first, count, mode, out, error, error_size));
    return result;
}
