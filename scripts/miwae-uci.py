#!/usr/bin/env python3
"""The MIWAE imputation protocol of Mattei & Frellsen (pamattei/miwae) with vae-mpi.

For each data set (scikit-learn's copies, as Debian's python3-sklearn ships them):
the columns are standardised (mean and standard deviation of the full data, as
the notebooks do), 50 % of the entries are removed completely at random with
numpy seed 1234 and np.random.choice(n*p, floor(n*p/2), replace=False) on the
flattened matrix, vae-mpi trains on every row with the MIWAE bound, imputes
the removed entries, and the score is the mean squared error on them. Beside
it: mean imputation and scikit-learn's IterativeImputer(ExtraTreesRegressor)
(missForest) on the same mask.

Each data set follows the notebook its published number comes from:
  breast cancer  TF2 notebook (0.2867): latent 10, two 128-unit layers, K = 20,
                 learned fill, batch 32, Adam 2e-4, 1000 epochs, L = 10000.
  iris           PyTorch notebook (0.444): latent 1, 128-unit layers, K = 20,
                 zero fill, batch 64, Adam 1e-3, 2001 epochs.
  boston         TF1 notebook (0.492): latent floor(p/2) = 6, 128-unit layers,
                 K = 20, learned fill, batch 64, Adam 1e-3, 601 epochs.
Differences from the notebooks, all in the model: vae-mpi's MLP mirrors its
hidden layers (the TF2 encoder has 3, its decoder 2: here both have 2), q(z|x)
is a Gaussian with a log-variance head (TF notebooks: a Student-t; PyTorch: a
Gaussian with a softplus scale), and the layers start from PyTorch's default
initialisation (notebooks: orthogonal or He). Imputations use the means of
p(x|z) with L importance draws (the PyTorch notebook averaged L = 10 samples).

Usage: scripts/miwae-uci.py [--quick] [--np N] [--seeds 1,2,3] [--out FILE] [breast iris boston]
  --quick: 5 % of the epochs (a smoke test; not the protocol).
  --seeds: train and impute once per seed (vae-mpi's --seed); the table gives
           their mean and each run's MSE (the mask stays the notebooks').
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBIAN_DATA = "/usr/lib/python3/dist-packages/sklearn/datasets/data"

PROTOCOLS = {
    "breast": dict(name="breast cancer", file="breast_cancer.csv", published=0.2867, latent=10,
                   hidden="128,128", batch=32, lr=2e-4, epochs=1000, fill="learned", samples=10000),
    "iris": dict(name="Iris", file="iris.csv", published=0.444, latent=1,
                 hidden="128,128", batch=64, lr=1e-3, epochs=2001, fill="zero", samples=1000),
    "boston": dict(name="Boston housing", file="boston_house_prices.csv", published=0.492, latent=6,
                   hidden="128,128", batch=64, lr=1e-3, epochs=601, fill="learned", samples=1000),
}


def load(file):
    """The features of one of scikit-learn's CSV data sets (first line: n, p, names; then rows)."""
    for folder in (DEBIAN_DATA, data_folder_of_installed_sklearn()):
        path = os.path.join(folder, file) if folder else None
        if path and os.path.exists(path):
            break
    else:
        sys.exit(f"miwae-uci: {file} not found (install python3-sklearn)")
    with open(path) as f:
        lines = f.read().splitlines()
    first = lines[0].split(",")
    n, p = int(first[0]), int(first[1])
    start = 2 if file == "boston_house_prices.csv" else 1   # Boston has a second header line of names
    rows = [line.split(",") for line in lines[start:start + n] if line.strip()]
    return np.array([[float(v) for v in row[:p]] for row in rows])


def data_folder_of_installed_sklearn():
    try:
        import sklearn
        return os.path.join(os.path.dirname(sklearn.__file__), "datasets", "data")
    except ImportError:
        return None


def protocol_mask(xfull):
    """The notebooks' missing entries: numpy seed 1234, half of the flattened entries."""
    n, p = xfull.shape
    np.random.seed(1234)
    xmiss = np.copy(xfull).flatten()
    pattern = np.random.choice(n * p, int(np.floor(n * p * 0.5)), replace=False)
    xmiss[pattern] = np.nan
    return xmiss.reshape([n, p])


def mse(xhat, xfull, missing):
    return float(np.mean((xhat - xfull)[missing] ** 2))


def run(cmd, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"miwae-uci: {' '.join(cmd[:3])} … failed; see {log}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("sets", nargs="*", default=["breast", "iris", "boston"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--np", type=int, default=1)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build/release/vae-mpi"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--work", default=None)
    parser.add_argument("--no-missforest", action="store_true")
    parser.add_argument("--seeds", default="1")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="miwae-uci-")
    os.makedirs(work, exist_ok=True)
    launcher = []
    if args.np > 1:
        launcher = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(args.np)]
    seeds = [int(v) for v in args.seeds.split(",")]
    lines = ["data set        n × p    vae-mpi MIWAE   published   mean imputation   missForest   train s   each seed"]
    for key in args.sets:
        spec = PROTOCOLS[key]
        data = load(spec["file"])
        xfull = (data - np.mean(data, 0)) / np.std(data, 0)
        xmiss = protocol_mask(xfull)
        missing = np.isnan(xmiss)
        n, p = xfull.shape
        miss_path, full_path = os.path.join(work, f"{key}-missing.npy"), os.path.join(work, f"{key}-full.npy")
        np.save(miss_path, xmiss.astype(np.float32))
        np.save(full_path, xfull.astype(np.float32))
        epochs = max(1, spec["epochs"] // 20) if args.quick else spec["epochs"]
        results, seconds = [], 0.0
        for seed in seeds:
            run_dir = os.path.join(work, f"{key}-run-{seed}")
            shutil.rmtree(run_dir, ignore_errors=True)
            log = os.path.join(work, f"{key}-{seed}.log")
            t0 = time.time()
            run(launcher + [args.binary, "train", "--train-file", miss_path, "--test-fraction", "0",
                            "--likelihood", "student-t", "--hidden-dims", spec["hidden"], "--latent-dim", str(spec["latent"]),
                            "--train-samples", "20", "--missing-fill", spec["fill"], "--batch-size", str(spec["batch"]),
                            "--lr", str(spec["lr"]), "--epochs", str(epochs), "--seed", str(seed), "--log-every", "100000",
                            "--run-dir", run_dir], log)
            seconds += time.time() - t0
            imputed_path = os.path.join(work, f"{key}-imputed-{seed}.npy")
            run(launcher + [args.binary, "impute", "--checkpoint", run_dir, "--data", miss_path, "--out", imputed_path,
                            "--truth", full_path, "--samples", str(spec["samples"])], log)
            xhat = np.load(imputed_path).astype(np.float64)
            assert np.array_equal(xhat[~missing].astype(np.float32), xmiss[~missing].astype(np.float32)), "observed entries changed"
            results.append(mse(xhat, xfull, missing))
        ours = float(np.mean(results))
        seconds /= len(seeds)
        from sklearn.impute import SimpleImputer
        mean_mse = mse(SimpleImputer(strategy="mean").fit_transform(xmiss), xfull, missing)
        forest = float("nan")
        if not args.no_missforest:
            from sklearn.experimental import enable_iterative_imputer  # noqa: F401
            from sklearn.impute import IterativeImputer
            from sklearn.ensemble import ExtraTreesRegressor
            imputer = IterativeImputer(estimator=ExtraTreesRegressor(n_estimators=100, max_depth=8, random_state=0),
                                       random_state=0)
            forest = mse(imputer.fit_transform(xmiss), xfull, missing)
        lines.append(f"{spec['name']:<15} {n:>3} × {p:<3} {ours:>10.4f}   {spec['published']:>10.4f}"
                     f"   {mean_mse:>15.4f}   {forest:>10.4f}   {seconds:>7.0f}   "
                     + " ".join(f"{v:.4f}" for v in results))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n" + f"vae-mpi: the mean over seeds {args.seeds} (train s: per run, np {args.np})\n" \
        + ("(quick: 5 % of the epochs, not the protocol)\n" if args.quick else "")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
