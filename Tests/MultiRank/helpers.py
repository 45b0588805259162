#!/usr/bin/env python3
"""Helpers for the multi-rank tests: write small IDX datasets, and read what
vae-mpi wrote (metrics.jsonl, PNG, safetensors) with independent code."""
import gzip
import json
import math
import os
import struct
import sys
import zlib


def idx_bytes(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def make_dataset(directory, train, test, height, width, seed=5):
    """Blobs on a dark background (a VAE learns them fast), gzip and raw."""
    os.makedirs(directory, exist_ok=True)
    state = seed

    def rand():
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (state >> 33) / 2**31

    def images(n):
        pixels, labels = bytearray(), bytearray()
        for _ in range(n):
            cy, cx, r = rand() * height, rand() * width, 1.5 + rand() * 2.5
            label = int(r > 2.75)
            for y in range(height):
                for x in range(width):
                    d = math.hypot(y - cy, x - cx)
                    pixels.append(max(0, min(255, int(255 * (1.2 - d / r)))))
            labels.append(label)
        return pixels, labels

    tr, trl = images(train)
    te, tel = images(test)
    with gzip.open(os.path.join(directory, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(idx_bytes([train, height, width], tr))
    with gzip.open(os.path.join(directory, "train-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(idx_bytes([train], trl))
    with open(os.path.join(directory, "t10k-images-idx3-ubyte"), "wb") as f:
        f.write(idx_bytes([test, height, width], te))
    with open(os.path.join(directory, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(idx_bytes([test], tel))


def write_10x(directory, x, metadata_line=False):
    """A 10x Genomics CellRanger folder of the counts x (genes × cells): matrix.mtx.gz (coordinate
    integer, 1-based), features.tsv.gz (ENSG…, Gene…, Gene Expression) and barcodes.tsv.gz (CELL…-1)."""
    os.makedirs(directory, exist_ok=True)
    genes, cells = len(x), len(x[0])
    entries = [(i, j, int(x[i][j])) for i in range(genes) for j in range(cells) if x[i][j] > 0]
    with gzip.open(f"{directory}/matrix.mtx.gz", "wt") as f:
        f.write("%%MatrixMarket matrix coordinate integer general\n")
        if metadata_line:
            f.write("%metadata_json: {}\n")
        f.write(f"{genes} {cells} {len(entries)}\n")
        for i, j, v in entries:
            f.write(f"{i + 1} {j + 1} {v}\n")
    with gzip.open(f"{directory}/features.tsv.gz", "wt") as f:
        for i in range(genes):
            f.write(f"ENSG{i:05d}\tGene{i}\tGene Expression\n")
    with gzip.open(f"{directory}/barcodes.tsv.gz", "wt") as f:
        for j in range(cells):
            f.write(f"CELL{j:04d}-1\n")


def png_size(path):
    """(width, height, channels) of a PNG, after checking its chunks' CRCs and
    that the image data inflates to the right size."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat, info = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind}"
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
            info = (w, h, {0: 1, 2: 3}[color])
            assert depth == 8
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, c = info
    assert len(zlib.decompress(idat)) == h * (1 + w * c), f"{path}: image data size"
    return info


def safetensors(path):
    """{name: (shape, [floats])} and metadata, parsed per the format."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32"
        b, e = info["data_offsets"]
        raw = data[8 + n + b:8 + n + e]
        out[name] = (info["shape"], list(struct.unpack(f"<{len(raw) // 4}f", raw)))
    return out, meta


def metrics(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def check_run(run, epochs, test_samples, world, image, channels=1):
    """The run directory of a finished `vae-mpi train` run."""
    h, w = image
    ms = metrics(run)
    train = [m for m in ms if m["type"] == "train"]
    evals = [m for m in ms if m["type"] == "eval"]
    assert train, "no train entries"
    for m in train:
        for key in ("step", "epoch", "loss", "samples_per_s"):
            assert key in m, f"train entry lacks {key}: {m}"
        assert math.isfinite(m["loss"]) and m["samples_per_s"] > 0
    assert len(evals) == epochs, f"{len(evals)} eval entries, expected {epochs}"
    for m in evals:
        assert m["test_samples"] == test_samples, m
        assert abs(m["test_loss"] - (m["test_reconstruction"] + m["test_kl"])) < 1e-6 * abs(m["test_loss"])
        # Bits per dimension only where they are a code length (discrete likelihoods); then −ELBO in bits.
        if "test_bits_per_dim" in m:
            assert abs(m["test_bits_per_dim"] - m["test_loss"] / (channels * h * w * math.log(2))) < 1e-9
        assert len(m["test_kl_per_dim"]) >= 1 and 0 <= m["active_units"] <= len(m["test_kl_per_dim"])
    if len(train) > 1:
        assert train[-1]["loss"] < train[0]["loss"], "loss did not decrease"
    c = 3 if channels == 3 else 1
    config = json.load(open(f"{run}/config.json"))
    rows = config["architecture"].get("conditional_classes") or 8   # a conditional model: one row per class
    for e in range(1, epochs + 1):
        assert png_size(f"{run}/samples/epoch-{e:04d}.png") == (8 * w + 18, rows * h + 2 * rows + 2, c)
        shown = min(8, test_samples)   # the first test images, above their reconstructions
        assert png_size(f"{run}/reconstructions/epoch-{e:04d}.png") == (shown * w + 2 * shown + 2, 2 * h + 6, c)
    stem = open(f"{run}/checkpoints/latest").read().strip()
    tensors, meta = safetensors(f"{run}/checkpoints/{stem}.safetensors")
    sidecar = json.load(open(f"{run}/checkpoints/{stem}.json"))
    assert sidecar["world_size"] == world, sidecar["world_size"]
    assert sidecar["step"] == evals[-1]["step"]
    if "fc1.weight" in tensors:
        k = config["architecture"].get("conditional_classes", 0)
        assert tensors["fc1.weight"][0][1] == h * w * channels + k, tensors["fc1.weight"][0]
    else:
        k = config["architecture"].get("conditional_classes", 0)
        assert tensors["enc.conv1.weight"][0][1] == channels + k, tensors["enc.conv1.weight"][0]
    for name, (_, values) in tensors.items():
        want = sidecar["checksums"][name]
        got = "crc32:%08x" % zlib.crc32(struct.pack(f"<{len(values)}f", *values))
        assert got == want, f"checksum of {name}"
    assert config["epochs"] >= epochs
    print(f"ok: {len(train)} train and {len(evals)} eval entries, checkpoint {stem}, final test loss {evals[-1]['test_loss']:.3f}")


def make_npy_dataset(directory, train, test, channels, height, width, with_test=True, scale=1.0, shift=0.0):
    """Float32 images N×C×H×W (smooth random fields, values scale·u + shift)
    and int64 labels, as train-images.npy / test-images.npy / *-labels.npy."""
    import numpy as np
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(7)

    def images(n):
        base = rng.random((n, channels, height // 4, width // 4), dtype=np.float32)
        x = base.repeat(4, axis=2).repeat(4, axis=3)  # blocky but structured
        labels = (base.mean(axis=(1, 2, 3)) * 10).astype(np.int64) % 10
        return (scale * x + shift).astype(np.float32), labels

    xtr, ltr = images(train)
    np.save(os.path.join(directory, "train-images.npy"), xtr)
    np.save(os.path.join(directory, "train-labels.npy"), ltr)
    if with_test:
        xte, lte = images(test)
        np.save(os.path.join(directory, "test-images.npy"), xte)
        np.save(os.path.join(directory, "test-labels.npy"), lte)


def final_test_loss(run):
    return [m for m in metrics(run) if m["type"] == "eval"][-1]["test_loss"]


def same_tensors(a, b):
    """Byte-identical tensor data (and names, shapes) in two checkpoints."""
    ta, _ = safetensors(a)
    tb, _ = safetensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k][0] == tb[k][0], k
        pa = struct.pack(f"<{len(ta[k][1])}f", *ta[k][1])
        pb = struct.pack(f"<{len(tb[k][1])}f", *tb[k][1])
        if pa != pb:
            raise AssertionError(f"tensor {k} differs")
    print(f"ok: {len(ta)} tensors byte-identical")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-dataset":
        make_dataset(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
    elif cmd == "check-run":
        check_run(args[0], int(args[1]), int(args[2]), int(args[3]), (int(args[4]), int(args[5])),
                  int(args[6]) if len(args) > 6 else 1)
    elif cmd == "make-npy-dataset":
        make_npy_dataset(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]), int(args[5]),
                         with_test=args[6] == "with-test", scale=float(args[7]), shift=float(args[8]))
    elif cmd == "final-test-loss":
        print(final_test_loss(args[0]))
    elif cmd == "same-tensors":
        same_tensors(args[0], args[1])
    else:
        sys.exit(f"unknown command {cmd}")


def kmeans(z, k, restarts=10, iterations=100):
    """k-means on the rows of z (numpy), seeded (0), the best of `restarts` by inertia: each row's cluster."""
    import numpy as np
    rng, best = np.random.default_rng(0), None
    for _ in range(restarts):
        c = z[rng.choice(len(z), k, replace=False)]
        for _ in range(iterations):
            a = np.argmin(((z[:, None] - c[None]) ** 2).sum(-1), 1)
            c = np.stack([z[a == j].mean(0) if (a == j).any() else c[j] for j in range(k)])
        inertia = ((z - c[a]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, a)
    return best[1]


def adjusted_rand_index(a, b):
    """The adjusted Rand index of two labellings (numpy arrays)."""
    import numpy as np
    pairs = lambda n: n * (n - 1) / 2
    t = np.array([[((a == i) & (b == j)).sum() for j in np.unique(b)] for i in np.unique(a)])
    s, sa, sb = pairs(t).sum(), pairs(t.sum(1)).sum(), pairs(t.sum(0)).sum()
    e = sa * sb / pairs(len(a))
    return (s - e) / ((sa + sb) / 2 - e)
