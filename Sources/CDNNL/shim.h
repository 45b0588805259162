// oneDNN's C API (Debian's libdnnl-dev; it has no pkg-config file: the header
// is dnnl.h and the library libdnnl).
#include <dnnl.h>
#include <dnnl_debug.h>
