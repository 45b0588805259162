#include "image_codecs.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

// ---------------------------------------------------------------- PNG

typedef struct {
    const unsigned char *data;
    size_t size;
    size_t offset;
    char *error;
    size_t error_size;
    jmp_buf jump;
} png_source;

static void png_fail(png_structp png, png_const_charp message) {
    png_source *source = (png_source *)png_get_error_ptr(png);
    snprintf(source->error, source->error_size, "%s", message);
    longjmp(source->jump, 1);
}

static void png_quiet(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_memory(png_structp png, png_bytep out, png_size_t count) {
    png_source *source = (png_source *)png_get_io_ptr(png);
    if (count > source->size - source->offset) {
        png_error(png, "the file ends early (truncated)");
    }
    memcpy(out, source->data + source->offset, count);
    source->offset += count;
}

int vm_decode_png(const unsigned char *data, size_t size, vm_image *image, unsigned char **pixels,
                  char *error, size_t error_size) {
    png_source source = {data, size, 0, error, error_size};
    *pixels = NULL;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(error, error_size, "not a PNG file (bad signature)");
        return -1;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, png_fail, png_quiet);
    if (!png) {
        snprintf(error, error_size, "libpng could not start");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    // Volatile: they change between setjmp and a longjmp back to it.
    unsigned char *volatile buffer = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(source.jump)) {
        if (!info) snprintf(error, error_size, "libpng could not start");
        free(buffer);
        free(rows);
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        return -1;
    }
    png_set_read_fn(png, &source, png_read_memory);
    png_set_user_limits(png, 1u << 20, 1u << 20);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info);
    png_uint_32 height = png_get_image_height(png, info);
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    if ((unsigned long long)width * height > VM_IMAGE_MAX_PIXELS) {
        png_error(png, "the image is too large (more than 2^28 pixels)");
    }
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (depth == 16) {
        const int one = 1;
        if (*(const char *)&one == 1) png_set_swap(png);  // PNG is big-endian; the host is not
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int out_depth = png_get_bit_depth(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (row_bytes != (size_t)width * channels * (out_depth / 8)) png_error(png, "unexpected row layout");
    buffer = malloc(row_bytes * height + 1);
    rows = malloc(sizeof(png_bytep) * (height + 1));
    if (!buffer || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = buffer + y * row_bytes;
    png_read_image(png, rows);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    image->width = (int)width;
    image->height = (int)height;
    image->channels = channels;
    image->depth = out_depth;
    *pixels = buffer;
    return 0;
}

// ---------------------------------------------------------------- JPEG

int vm_decode_jpeg(const unsigned char *data, size_t size, vm_image *image, unsigned char **pixels,
                   char *error, size_t error_size) {
    *pixels = NULL;
    tjhandle handle = tjInitDecompress();
    if (!handle) {
        snprintf(error, error_size, "libjpeg-turbo could not start: %s", tjGetErrorStr2(NULL));
        return -1;
    }
    int width = 0, height = 0, subsampling = 0, colorspace = 0;
    if (tjDecompressHeader3(handle, data, (unsigned long)size, &width, &height, &subsampling, &colorspace) != 0) {
        snprintf(error, error_size, "%s", tjGetErrorStr2(handle));
        tjDestroy(handle);
        return -1;
    }
    if (width <= 0 || height <= 0 || (unsigned long long)width * height > VM_IMAGE_MAX_PIXELS) {
        snprintf(error, error_size, "unsupported size %d × %d", width, height);
        tjDestroy(handle);
        return -1;
    }
    if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
        snprintf(error, error_size, "CMYK JPEGs are not supported (convert the image to RGB)");
        tjDestroy(handle);
        return -1;
    }
    int gray = colorspace == TJCS_GRAY;
    int channels = gray ? 1 : 3;
    unsigned char *buffer = malloc((size_t)width * height * channels + 1);
    if (!buffer) {
        snprintf(error, error_size, "out of memory");
        tjDestroy(handle);
        return -1;
    }
    // Any warning (a truncated or corrupt stream still "decodes") is an error.
    if (tjDecompress2(handle, data, (unsigned long)size, buffer, width, 0, height, gray ? TJPF_GRAY : TJPF_RGB,
                      TJFLAG_STOPONWARNING) != 0) {
        snprintf(error, error_size, "%s", tjGetErrorStr2(handle));
        free(buffer);
        tjDestroy(handle);
        return -1;
    }
    tjDestroy(handle);
    image->width = width;
    image->height = height;
    image->channels = channels;
    image->depth = 8;
    *pixels = buffer;
    return 0;
}
