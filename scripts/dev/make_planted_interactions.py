#!/usr/bin/env python3
"""A MovieLens-like interaction log with planted structure (issue 20):

    python3 scripts/dev/make_planted_interactions.py ratings.csv [--users 5000] [--items 3000] [--groups 10] [--seed 0]

Users fall into groups; each group prefers its own block of items. A user
clicks 20–150 items (log-uniform), 80 % from the group's block by a Zipf
popularity within it, the rest from all items by a global Zipf popularity
(a long tail). Clicks get ratings 4–5; each user also has a few ratings 1–3
(not clicks under --min-rating 4). Columns as MovieLens' ratings.csv:
userId, movieId, rating, timestamp.
"""
import argparse
import csv

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--users", type=int, default=5000)
p.add_argument("--items", type=int, default=3000)
p.add_argument("--groups", type=int, default=10)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
rng = np.random.default_rng(a.seed)
block = a.items // a.groups
popularity = 1 / np.arange(1, a.items + 1) ** 0.9
popularity = popularity[rng.permutation(a.items)]
popularity /= popularity.sum()
within = 1 / np.arange(1, block + 1) ** 0.7
within /= within.sum()
with open(a.out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["userId", "movieId", "rating", "timestamp"])
    for u in range(a.users):
        g = rng.integers(a.groups)
        n = int(np.exp(rng.uniform(np.log(20), np.log(150))))
        own = g * block + rng.choice(block, size=min(int(0.8 * n), block), replace=False, p=within)
        other = rng.choice(a.items, size=n - len(own), replace=False, p=popularity)
        for i in sorted(set(own.tolist()) | set(other.tolist())):
            w.writerow([u + 1, i + 1, rng.choice([4.0, 4.5, 5.0]), 0])
        for i in rng.choice(a.items, size=3, replace=False):
            w.writerow([u + 1, i + 1, rng.choice([1.0, 2.0, 3.0]), 0])
