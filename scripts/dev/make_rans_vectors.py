#!/usr/bin/env python3
"""Known-answer vectors for vae-mpi's rANS coder, from an independent
implementation of Giesen's rans64 (64-bit state in [2^31, 2^63), 32-bit
words, precisions up to 31 bits) in Python integers.

    python3 scripts/dev/make_rans_vectors.py Tests/CompressionTests/Fixtures/rans_vectors.json

Each vector: symbols pushed in order (start, frequency, precision), from a
message with head 2^31 and no words; the final message as words (the words
pushed, then the head's low and high 32 bits).
"""
import json
import random
import sys

L = 1 << 31


def push(head, tail, start, freq, prec):
    x_max = ((L >> prec) << 32) * freq
    if head >= x_max:
        tail.append(head & 0xFFFFFFFF)
        head >>= 32
    return ((head // freq) << prec) + (head % freq) + start


def vector(rng, count, precisions):
    head, tail, symbols = L, [], []
    for _ in range(count):
        prec = rng.choice(precisions)
        total = 1 << prec
        freq = rng.choice([1, 2, 3, total // 2, total - 1, rng.randint(1, total)])
        freq = max(1, min(freq, total))
        start = rng.randint(0, total - freq)
        symbols.append([start, freq, prec])
        head = push(head, tail, start, freq, prec)
    words = tail + [head & 0xFFFFFFFF, head >> 32]
    return {"symbols": symbols, "words": words}


rng = random.Random(20261205)
vectors = [vector(rng, n, p) for n, p in [(1, [8]), (10, [1, 2, 3]), (500, [8]), (500, [16]), (300, [31]),
                                          (2000, [1, 4, 8, 12, 16, 20, 24, 28, 31])]]
json.dump({"generator": "scripts/dev/make_rans_vectors.py", "vectors": vectors}, open(sys.argv[1], "w"))
print(f"wrote {sys.argv[1]}: {len(vectors)} vectors")
