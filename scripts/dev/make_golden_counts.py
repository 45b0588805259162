#!/usr/bin/env python3
"""Golden values for the count likelihoods (issue 20), PyTorch in float64.

    python3 scripts/dev/make_golden_counts.py Tests/VAEModelTests/Fixtures/count_likelihood_golden.json

Each case holds counts x (B rows of D features), the decoder's planes as
vae-mpi lays them out (plane 0 the logits l, B×D; planes 1… per row after it:
log θ, then the ZINB dropout logits π), −log p per element, and the gradient of
Σ −log p with respect to every plane. Written independently of the Swift code:

- multinomial (Mult-VAE): −x · log_softmax(l) over each row;
- Poisson: torch.distributions.Poisson(ℓ · softmax(l)).log_prob(x), ℓ = Σ x of the row;
- negative binomial and ZINB: scvi-tools' log_nb_positive and log_zinb_positive
  (ε = 1e-8) as published, with μ = ℓ · softmax(l), θ = exp(clamp(log θ, −20, 20)).

Rows hold zeros, large counts (up to 5000) and tiny and huge θ. Inputs are
float32-exact.
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(2020)
D = torch.float64


def f32(t):
    return t.to(torch.float32).to(D)


def log_nb_positive(x, mu, theta, eps=1e-8):
    log_theta_mu_eps = torch.log(theta + mu + eps)
    return (theta * (torch.log(theta + eps) - log_theta_mu_eps) + x * (torch.log(mu + eps) - log_theta_mu_eps)
            + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))


def log_zinb_positive(x, mu, theta, pi, eps=1e-8):
    softplus_pi = F.softplus(-pi)
    log_theta_eps = torch.log(theta + eps)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    pi_theta_log = -pi + theta * (log_theta_eps - log_theta_mu_eps)
    case_zero = F.softplus(pi_theta_log) - softplus_pi
    mul_case_zero = torch.mul((x < eps).type(torch.float64), case_zero)
    case_non_zero = (-softplus_pi + pi_theta_log + x * (torch.log(mu + eps) - log_theta_mu_eps)
                     + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))
    mul_case_non_zero = torch.mul((x > eps).type(torch.float64), case_non_zero)
    return mul_case_zero + mul_case_non_zero


def case(kind, x, planes, note):
    planes = planes.clone().requires_grad_(True)
    logits = planes[0]
    library = x.sum(1, keepdim=True)
    mu = library * torch.softmax(logits, 1)
    if kind == "multinomial":
        logp = x * torch.log_softmax(logits, 1)
    elif kind == "poisson":
        # torch.distributions.Poisson(μ).log_prob(x), with x log μ written from log μ so that an
        # empty row (ℓ = 0, μ = 0) has the gradient 0 rather than 0/0.
        log_mu = torch.log(library) + torch.log_softmax(logits, 1)
        logp = torch.where(x > 0, x * torch.where(x > 0, log_mu, torch.zeros_like(log_mu)), torch.zeros_like(x)) \
            - mu - torch.lgamma(x + 1)
        full = library[:, 0] > 0
        reference = torch.distributions.Poisson(mu.detach()[full]).log_prob(x[full])
        assert torch.allclose(logp.detach()[full], reference), "Poisson against torch.distributions"
    else:
        theta = torch.exp(torch.clamp(planes[1], -20.0, 20.0))
        logp = log_nb_positive(x, mu, theta) if kind == "negative-binomial" else log_zinb_positive(x, mu, theta, planes[2])
    (-logp).sum().backward()
    b, d = x.shape
    # vae-mpi's layout: location (B, D); auxiliary (B, (P−1)·D), parameter-major within each row.
    location = planes[0].detach()
    auxiliary = planes[1:].detach().permute(1, 0, 2).reshape(b, -1)
    glocation = planes.grad[0]
    gauxiliary = planes.grad[1:].permute(1, 0, 2).reshape(b, -1)
    return {"likelihood": kind, "note": note, "rows": b, "width": d, "planes": planes.shape[0],
            "x": x.flatten().tolist(), "location": location.flatten().tolist(), "auxiliary": auxiliary.flatten().tolist(),
            "negative_log_probability": (-logp).detach().flatten().tolist(),
            "gradient_location": glocation.flatten().tolist(), "gradient_auxiliary": gauxiliary.flatten().tolist()}


def counts(b, d):
    x = torch.poisson(torch.rand(b, d, dtype=D) * 6)
    x[0, :3] = 0
    x[1, 0] = 5000
    x[2, 1] = 1
    x[3] = 0                      # an empty row: library 0
    return x


b, d = 4, 7
cases = []
x = counts(b, d)
cases.append(case("multinomial", x, f32(torch.randn(1, b, d, dtype=D) * 2), "multinomial, zeros, 5000, an empty row"))
clicks = (torch.rand(b, d, dtype=D) < 0.4).to(D)
cases.append(case("multinomial", clicks, f32(torch.randn(1, b, d, dtype=D)), "multinomial on clicks"))
cases.append(case("poisson", x, f32(torch.randn(1, b, d, dtype=D) * 2), "Poisson"))
planes = f32(torch.cat([torch.randn(1, b, d, dtype=D) * 2, torch.randn(1, b, d, dtype=D) * 3]))
planes[1, 0, :3] = torch.tensor([-15.0, 12.0, -19.5], dtype=D)
cases.append(case("negative-binomial", x, planes, "NB, tiny and huge θ"))
planes = f32(torch.cat([torch.randn(1, b, d, dtype=D) * 2, torch.randn(1, b, d, dtype=D) * 3,
                        torch.randn(1, b, d, dtype=D) * 3]))
planes[1, 0, :3] = torch.tensor([-15.0, 12.0, -19.5], dtype=D)
planes[2, 1, :2] = torch.tensor([25.0, -25.0], dtype=D)
cases.append(case("zinb", x, planes, "ZINB, tiny and huge θ, extreme dropout logits"))
with open(sys.argv[1], "w") as f:
    json.dump({"cases": cases}, f)
print(len(cases), "cases")
