#ifndef VAE_MPI_IMAGE_CODECS_H
#define VAE_MPI_IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

/// A decoded image: `channels` interleaved samples per pixel (1 gray,
/// 2 gray+alpha, 3 RGB, 4 RGBA), `depth` bits per sample (8, or 16 in the
/// host's byte order), rows top to bottom with no padding.
typedef struct {
    int width;
    int height;
    int channels;
    int depth;
} vm_image;

/// The largest image either decoder accepts, in pixels (a guard against
/// decompression bombs): 2^28, e.g. 16384 × 16384.
#define VM_IMAGE_MAX_PIXELS (1ull << 28)

/// Decodes a PNG of any bit depth and colour type with libpng: palettes
/// and tRNS transparency are expanded (to RGB or RGBA), gray below 8 bits
/// is scaled to 8 bits, 16-bit samples are kept, interlacing is undone;
/// gamma and colour chunks are ignored (as Pillow does). On success
/// returns 0 and sets *pixels to a malloc'd buffer the caller frees; on
/// failure returns -1 and writes what failed into `error`.
int vm_decode_png(const unsigned char *data, size_t size, vm_image *image, unsigned char **pixels,
                  char *error, size_t error_size);

/// Decodes a baseline or progressive JPEG with libjpeg-turbo's TurboJPEG
/// API: gray JPEGs to 1 channel, colour ones to RGB (8 bits; the accurate
/// integer DCT and fancy upsampling, libjpeg's defaults, which Pillow uses
/// too). A truncated or corrupt stream is an error, as are CMYK JPEGs.
int vm_decode_jpeg(const unsigned char *data, size_t size, vm_image *image, unsigned char **pixels,
                   char *error, size_t error_size);

#endif
