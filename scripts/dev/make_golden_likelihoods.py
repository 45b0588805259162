#!/usr/bin/env python3
"""Golden values for the likelihoods, written with PyTorch in float64.

    python3 scripts/dev/make_golden_likelihoods.py Tests/VAEModelTests/Fixtures/likelihood_golden.json

Each case holds the integer levels x, the decoder's parameters as vae-mpi lays
them out (P planes of n values: plane 0 is DecoderOutput.location, planes
1…P−1 DecoderOutput.auxiliary), log p(x_i) per element, and the gradient of
Σ log p with respect to every parameter. The formulas here are written
independently of vae-mpi's (Swift) ones:

- discretized logistic (Salimans et al. 2017): log(σ(a) − σ(b)) as
  log σ(a) + log(−expm1(log σ(b) − log σ(a))), mirrored to the side of the
  logistic where both arguments are ≤ 0, and the end bins as log σ(a) and
  log σ(−b); log-scales clamped with torch.clamp; the mixture by logsumexp over
  log_softmax weights;
- beta-binomial (Townsend et al. 2019): torch.lgamma; α, β = exp(clamp(·));
- Student's t (MIWAE): torch.distributions.StudentT with scale softplus(·) +
  0.001 and degrees of freedom softplus(·) + 3.

Inputs are float32-exact (drawn in float32, then widened), so the Swift side
can be given exactly the same values.
"""
import json
import sys

import torch

torch.manual_seed(1234)
D = torch.float64


def f32(t):
    return t.to(torch.float32).to(D)


def log_diff_sigmoid(a, b):
    """log(σ(a) − σ(b)) for a > b."""
    mirror = (a + b) > 0
    a2 = torch.where(mirror, -b, a)
    b2 = torch.where(mirror, -a, b)
    la, lb = torch.nn.functional.logsigmoid(a2), torch.nn.functional.logsigmoid(b2)
    return la + torch.log(-torch.expm1(lb - la))


def logistic_logp(x, planes, levels, mixtures):
    n = mixtures
    k = levels
    h = 0.5 / (k - 1)
    c = x / (k - 1)
    locations = planes[0:n]
    log_scales = torch.clamp(planes[n:2 * n], -9.0, 7.0)
    if n > 1:
        log_weights = torch.log_softmax(planes[2 * n:3 * n], dim=0)
    else:
        log_weights = torch.zeros_like(locations)
    inv = torch.exp(-log_scales)
    a = (c + h - locations) * inv
    b = (c - h - locations) * inv
    first = (x == 0).expand_as(a)
    last = (x == k - 1).expand_as(a)
    interior = log_diff_sigmoid(torch.where(first | last, a + 1.0, a), torch.where(first | last, a - 1.0, b))
    logp = torch.where(first, torch.nn.functional.logsigmoid(a),
                       torch.where(last, torch.nn.functional.logsigmoid(-b), interior))
    return torch.logsumexp(log_weights + logp, dim=0)


def beta_binomial_logp(x, planes, levels):
    n = levels - 1
    alpha = torch.exp(torch.clamp(planes[0], -10.0, 15.0))
    beta = torch.exp(torch.clamp(planes[1], -10.0, 15.0))
    lg = torch.lgamma
    log_choose = lg(torch.tensor(n + 1.0, dtype=D)) - lg(x + 1) - lg(n - x + 1)
    return (log_choose + lg(x + alpha) + lg(n - x + beta) - lg(n + alpha + beta)
            - lg(alpha) - lg(beta) + lg(alpha + beta))


def student_t_logp(x, planes):
    """MIWAE's Student's t: scale softplus(·) + 0.001, degrees of freedom softplus(·) + 3 (torch.distributions)."""
    scale = torch.nn.functional.softplus(planes[1]) + 0.001
    df = torch.nn.functional.softplus(planes[2]) + 3
    return torch.distributions.StudentT(df=df, loc=planes[0], scale=scale).log_prob(x)


def case(kind, x, planes, levels, mixtures=1, note=""):
    planes = planes.clone().requires_grad_(True)
    if kind == "discretized-logistic":
        logp = logistic_logp(x, planes, levels, mixtures)
    elif kind == "student-t":
        logp = student_t_logp(x, planes)
    else:
        logp = beta_binomial_logp(x, planes, levels)
    logp.sum().backward()
    return {
        "likelihood": kind, "levels": levels, "mixtures": mixtures, "note": note,
        "x": x.tolist(), "parameters": planes.detach().flatten().tolist(), "planes": planes.shape[0],
        "log_probability": logp.detach().tolist(), "gradient": planes.grad.flatten().tolist(),
    }


def uniform(shape, low, high):
    return f32(torch.rand(shape, dtype=torch.float32).to(D) * (high - low) + low)


def levels_with_ends(n, k):
    x = torch.randint(0, k, (n,)).to(D)
    x[0], x[1] = 0, k - 1
    return x


cases = []
n = 24
# One logistic, 8-bit: ordinary locations and scales, the end bins included.
x = levels_with_ends(n, 256)
cases.append(case("discretized-logistic", x,
                  torch.stack([uniform(n, -0.2, 1.2), uniform(n, -6, -1)]), 256, note="one component, 256 levels"))
# Extreme scales and locations: the clamp's edges and beyond, locations far outside [0, 1], tiny and huge bins.
x = levels_with_ends(n, 256)
loc = uniform(n, -40, 40)
loc[2:8] = x[2:8] / 255 + f32(torch.tensor([1e-4, -1e-4, 0.0, 2e-3, -2e-3, 5e-5], dtype=D))
ls = uniform(n, -12, 10)
ls[2:8] = torch.tensor([-9.0, -9.0, -8.5, -9.0, -3.0, 7.0], dtype=D)
cases.append(case("discretized-logistic", x, torch.stack([loc, ls]), 256, note="extreme scales and locations"))
# A mixture of 3.
x = levels_with_ends(n, 256)
cases.append(case("discretized-logistic", x,
                  torch.cat([uniform((3, n), -0.1, 1.1), uniform((3, n), -5, -1), uniform((3, n), -3, 3)]), 256, 3,
                  note="mixture of 3"))
# Few levels (bins of width 1/3), a mixture of 2.
x = levels_with_ends(n, 4)
cases.append(case("discretized-logistic", x,
                  torch.cat([uniform((2, n), -0.5, 1.5), uniform((2, n), -4, 1), uniform((2, n), -2, 2)]), 4, 2,
                  note="4 levels, mixture of 2"))
# Beta-binomial, 8-bit, ordinary parameters.
x = levels_with_ends(n, 256)
cases.append(case("beta-binomial", x, torch.stack([uniform(n, -3, 4), uniform(n, -3, 4)]), 256,
                  note="256 levels"))
# Beta-binomial at the extremes: the clamp's edges, huge and tiny concentrations.
x = levels_with_ends(n, 256)
la, lb = uniform(n, -12, 17), uniform(n, -12, 17)
la[2:6] = torch.tensor([-10.0, 15.0, 14.5, -9.5], dtype=D)
lb[2:6] = torch.tensor([15.0, -10.0, 14.9, 12.0], dtype=D)
cases.append(case("beta-binomial", x, torch.stack([la, lb]), 256, note="extreme parameters"))
# Beta-binomial with 2 and 5 levels.
for k in (2, 5):
    x = levels_with_ends(n, k)
    cases.append(case("beta-binomial", x, torch.stack([uniform(n, -4, 5), uniform(n, -4, 5)]), k,
                      note=f"{k} levels"))

# Student's t (MIWAE): ordinary values, heavy tails (x far from μ), tiny and huge scales, degrees of freedom near
# their floor and large.
x = f32(torch.randn(n, dtype=D) * 2)
x[2:5] = torch.tensor([40.0, -60.0, 0.5], dtype=D)
loc = uniform(n, -2, 2)
raw_scale = uniform(n, -3, 3)
raw_scale[5:8] = torch.tensor([-20.0, 8.0, -7.0], dtype=D)
raw_df = uniform(n, -4, 4)
raw_df[8:11] = torch.tensor([-15.0, 12.0, 0.0], dtype=D)
cases.append(case("student-t", x, torch.stack([loc, raw_scale, raw_df]), 0, note="student-t"))

with open(sys.argv[1], "w") as f:
    json.dump({"generator": "scripts/dev/make_golden_likelihoods.py", "torch": torch.__version__, "cases": cases}, f)
print(f"wrote {sys.argv[1]}: {len(cases)} cases")
