#!/usr/bin/env python3
"""Image folders for the multi-rank tests, and independent checks of what
vae-mpi decodes from them (with Pillow and NumPy, never with vae-mpi's code).

  images.py formats DIR            one image of every supported format and mode, plus files to ignore
  images.py check-formats DIR EXPORT CHANNELS
                                   EXPORT (vae-mpi export-data of DIR) holds the pixels Pillow decodes
  images.py resize DIR             photos of several sizes for the crop and resize checks
  images.py check-resize DIR EXPORT CROP H W
                                   EXPORT matches Pillow's center crop, then box/bilinear resize
  images.py classes DIR N K SIZE CHANNELS LAYOUT
                                   N images of K classes (a blob in a class-specific place), SIZE×SIZE,
                                   in LAYOUT classes | splits | flat | splits-flat
  images.py bad DIR KIND           one unreadable image of KIND in DIR; prints its path
  images.py check-samples TRAIN_NPY LABELS_NPY SAMPLES_PREFIX K
                                   samples of class k are nearer class k's mean image than any other's
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image


def png16(path, array):
    """A 16-bit PNG written here (Pillow cannot write 16-bit RGB): array is
    (H, W) gray or (H, W, 3|4) RGB(A), uint16."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def composite(rgba, maximum):
    """Alpha composited on black, rounded to the nearest integer: round(c·a/max)."""
    c = rgba[..., :-1].astype(np.int64)
    a = rgba[..., -1:].astype(np.int64)
    return (c * a * 2 + maximum) // (2 * maximum)


def formats(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(7)
    H, W = 6, 8
    expected = {}  # file name -> (H, W, 3) or (H, W) integer array, and its maximum
    def rand(*shape, hi=256):
        return rng.integers(0, hi, shape, dtype=np.int64)
    gray = rand(H, W).astype(np.uint8)
    Image.fromarray(gray, "L").save(f"{d}/gray.png")
    expected["gray.png"] = (gray, 255)
    la = rand(H, W, 2).astype(np.uint8)
    Image.fromarray(la, "LA").save(f"{d}/gray_alpha.png")
    expected["gray_alpha.png"] = (composite(la, 255)[..., 0], 255)
    rgb = rand(H, W, 3).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(f"{d}/rgb.png")
    expected["rgb.png"] = (rgb, 255)
    rgba = rand(H, W, 4).astype(np.uint8)
    rgba[0, 0, 3] = 0
    rgba[0, 1, 3] = 255
    Image.fromarray(rgba, "RGBA").save(f"{d}/upper.PNG")
    expected["upper.PNG"] = (composite(rgba, 255), 255)
    palette = Image.fromarray(rand(H, W, hi=16).astype(np.uint8), "P")
    palette.putpalette(list(rand(16 * 3).astype(np.uint8)))
    palette.save(f"{d}/palette.png")
    expected["palette.png"] = (np.array(Image.open(f"{d}/palette.png").convert("RGB")), 255)
    transparent = palette.copy()
    transparent.info["transparency"] = 3
    transparent.save(f"{d}/palette_trns.png", transparency=3)
    expected["palette_trns.png"] = (composite(np.array(Image.open(f"{d}/palette_trns.png").convert("RGBA")), 255), 255)
    bits = Image.fromarray((rand(H, W, hi=2) * 255).astype(np.uint8), "L").convert("1")
    bits.save(f"{d}/bilevel.png")
    expected["bilevel.png"] = (np.array(Image.open(f"{d}/bilevel.png").convert("L")), 255)
    jpeg = Image.fromarray(rand(H, W, 3).astype(np.uint8), "RGB")
    jpeg.save(f"{d}/photo.jpg", quality=90)
    expected["photo.jpg"] = (np.array(Image.open(f"{d}/photo.jpg").convert("RGB")), 255)
    Image.fromarray(gray, "L").save(f"{d}/gray.JPEG", quality=90)
    expected["gray.JPEG"] = (np.array(Image.open(f"{d}/gray.JPEG")), 255)
    if len(sys.argv) > 3 and sys.argv[3] == "16":
        g16 = rand(H, W, hi=65536).astype(np.uint16)
        png16(f"{d}/gray16.png", g16)
        expected["gray16.png"] = (g16, 65535)
        c16 = rand(H, W, 3, hi=65536).astype(np.uint16)
        png16(f"{d}/rgb16.png", c16)
        expected["rgb16.png"] = (c16, 65535)
        a16 = rand(H, W, 4, hi=65536).astype(np.uint16)
        png16(f"{d}/rgba16.png", a16)
        expected["rgba16.png"] = (composite(a16, 65535), 65535)
        # Pillow reads 16-bit gray as it is: an independent read of the file this script wrote.
        assert (np.array(Image.open(f"{d}/gray16.png")).astype(np.int64) == g16).all()
    # Files to ignore (hidden) and to skip (not images).
    Image.fromarray(gray, "L").save(f"{d}/.hidden.png")
    with open(f"{d}/notes.txt", "w") as f:
        f.write("not an image\n")
    np.save(f"{d}/expected.npy", np.array([0]))  # another non-image file
    os.remove(f"{d}/expected.npy")
    with open(f"{d}/.expected.json", "w") as f:
        import json
        json.dump({k: {"data": v.tolist(), "max": m} for k, (v, m) in expected.items()}, f)


def luma(rgb):
    """ITU-R 601-2 luma as Pillow computes "L" from "RGB" (its fixed point)."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def check_formats(d, export, channels):
    import json
    channels = int(channels)
    expected = json.load(open(f"{d}/.expected.json"))
    names = sorted(expected, key=lambda s: [ord(c) for c in s])  # the folder's order: code points
    images = np.load(f"{export}/train-images.npy")
    tests = np.load(f"{export}/test-images.npy")
    # export-data holds out a test set: recover the order from the two sets by matching.
    everything = np.concatenate([images, tests])
    assert len(everything) == len(names), (len(everything), len(names))
    floats = everything.dtype == np.float32
    found = 0
    for name in names:
        value, maximum = expected[name]["data"], expected[name]["max"]
        a = np.array(value, dtype=np.int64)
        if channels == 3 and a.ndim == 2:
            a = np.stack([a] * 3, -1)
        if channels == 1 and a.ndim == 3:
            a = luma(a)
        a = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)   # (C, H, W)
        want = a / maximum if floats else a
        diffs = [np.abs(e.astype(np.float64) - want).max() for e in everything]
        best = int(np.argmin(diffs))
        tolerance = 1e-6 if floats else 0
        print(f"{name}: max |difference| {diffs[best]:.3g} ({'float' if floats else 'uint8'})")
        assert diffs[best] <= tolerance, f"{name}: no decoded image matches (closest differs by {diffs[best]})"
        found += 1
    print(f"all {found} images decode to Pillow's pixels")


def resize_images(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(3)
    for i, (w, h) in enumerate([(40, 30), (33, 47), (64, 64), (25, 25)]):
        # Smooth images, so box and bilinear results are meaningful.
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([127 + 120 * np.sin(x / (3 + i + c) + y / (4 + c)) for c in range(3)], -1)
        img += rng.normal(0, 4, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(f"{d}/img{i}.png")


def check_resize(d, export, crop, h, w):
    crop, h, w = int(crop), int(h), int(w)
    everything = np.concatenate([np.load(f"{export}/train-images.npy"), np.load(f"{export}/test-images.npy")])
    names = sorted(n for n in os.listdir(d) if n.endswith(".png"))
    worst = 0.0
    for name in names:
        im = Image.open(f"{d}/{name}").convert("RGB")
        if crop:
            left = int(round((im.width - crop) / 2.0))   # torchvision's CenterCrop
            top = int(round((im.height - crop) / 2.0))
            im = im.crop((left, top, left + crop, top + crop))
        shrink = w < im.width or h < im.height
        grow = w > im.width or h > im.height
        assert not (shrink and grow), "the checks use one direction per image"
        ref = im.resize((w, h), Image.BOX if shrink else Image.BILINEAR) if (shrink or grow) else im
        want = np.moveaxis(np.array(ref).astype(np.int64), -1, 0)
        diffs = [np.abs(e.astype(np.int64) - want) for e in everything]
        best = min(diffs, key=lambda a: a.max())
        print(f"{name}: {im.width}x{im.height} -> {w}x{h} ({'box' if shrink else 'bilinear' if grow else 'none'}): "
              f"max |difference| {best.max()}, mean {best.mean():.3f}")
        # Pillow computes in 8-bit fixed point; within one level of the exact filter.
        assert best.max() <= 1 and best.mean() < 0.25, name
        worst = max(worst, best.max())
    print(f"all {len(names)} match Pillow within {worst} levels")


def class_images(d, n, k, size, channels, layout):
    n, k, size, channels = int(n), int(k), int(size), int(channels)
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:size, 0:size]
    names = [f"class_{c}" for c in range(k)]
    for i in range(n):
        c = i % k
        # Class c: a bright blob around its own point of a circle, jittered.
        angle = 2 * np.pi * c / k
        cx = size / 2 + size * 0.3 * np.cos(angle) + rng.normal(0, size * 0.03)
        cy = size / 2 + size * 0.3 * np.sin(angle) + rng.normal(0, size * 0.03)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (size * 0.12) ** 2))
        img = np.clip(255 * blob + rng.normal(0, 8, blob.shape), 0, 255).astype(np.uint8)
        if channels == 3:
            tint = np.array([1.0, 0.6 + 0.4 * (c % 2), 0.5 + 0.5 * (c % 3) / 2])
            img = (img[..., None] * tint).astype(np.uint8)
        split = "test" if i % 10 == 9 else "train"
        if layout == "classes":
            folder = f"{d}/{names[c]}"
        elif layout == "splits":
            folder = f"{d}/{split}/{names[c]}"
        elif layout == "splits-flat":
            folder = f"{d}/{split}"
        else:
            folder = d
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(img).save(f"{folder}/{i:05d}.png")


def bad(d, kind):
    os.makedirs(d, exist_ok=True)
    good = Image.fromarray(np.full((8, 8), 128, np.uint8), "L")   # the size of `classes` images of size 8
    path = f"{d}/bad-{kind}"
    if kind == "truncated-png":
        good.save(path + ".png")
        data = open(path + ".png", "rb").read()
        open(path + ".png", "wb").write(data[:len(data) - 20])
        path += ".png"
    elif kind == "truncated-jpeg":
        good.save(path + ".jpg", quality=90)
        data = open(path + ".jpg", "rb").read()
        open(path + ".jpg", "wb").write(data[:len(data) // 2])
        path += ".jpg"
    elif kind == "crc-png":
        good.save(path + ".png")
        data = bytearray(open(path + ".png", "rb").read())
        i = data.index(b"IDAT") + 6
        data[i] ^= 0xFF
        open(path + ".png", "wb").write(bytes(data))
        path += ".png"
    elif kind == "empty-jpeg":
        open(path + ".jpeg", "wb").close()
        path += ".jpeg"
    elif kind == "text-png":
        open(path + ".png", "w").write("this is not a PNG\n" * 10)
        path += ".png"
    elif kind == "header-only-png":
        good.save(path + ".png")
        data = open(path + ".png", "rb").read()
        open(path + ".png", "wb").write(data[:40])
        path += ".png"
    else:
        raise SystemExit(f"unknown kind {kind}")
    print(path)


def check_samples(train_npy, labels_npy, prefix, k):
    k = int(k)
    x = np.load(train_npy).astype(np.float64)
    x = x / 255.0 if np.load(train_npy).dtype == np.uint8 else x
    labels = np.load(labels_npy)
    means = np.stack([x[labels == c].mean(0) for c in range(k)])
    right = 0
    for c in range(k):
        s = np.load(f"{prefix}{c}.npy").astype(np.float64)
        distance = [np.abs(s - means[j]).mean() for j in range(k)]
        nearest = int(np.argmin(distance))
        print(f"samples of class {c}: mean pixel distance to class means "
              + ", ".join(f"{j}: {v:.4f}" for j, v in enumerate(distance)) + f" -> nearest {nearest}")
        right += nearest == c
    print(f"{right} of {k} classes nearest their own mean")
    assert right * 4 >= k * 3, "most classes' samples must be nearest their own class mean"


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"formats": lambda: formats(args[0]), "check-formats": lambda: check_formats(*args),
     "resize": lambda: resize_images(args[0]), "check-resize": lambda: check_resize(*args),
     "classes": lambda: class_images(*args), "bad": lambda: bad(*args),
     "check-samples": lambda: check_samples(*args)}[command]()
