"""The training methods of the randomized-smoothing literature that Jeong & Shin compare:
stability training, Consistency, MACER, SmoothMix. Each objective against a value computed here
by hand (explicit loops over examples and noise copies, float64) on a linear model with fixed
weights and the method's own noise draws regenerated from the seed."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from helpers import smoothcert
from smoothcert.training.method import BatchContext
from smoothcert.training.registry import get_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")

W = [[4.0, 0.5, -1.0, 0.3], [-0.5, 4.0, 0.5, -0.2], [1.0, -1.0, 4.0, 0.1]]
B = [0.1, -0.2, 0.3]


def linear() -> nn.Module:
    """f(x) = W·vec(x) + b on 1×2×2 images, 3 classes, float64, fixed weights."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(W, dtype=torch.float64))
        model[1].bias.copy_(torch.tensor(B, dtype=torch.float64))
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    x = 0.3 + 0.4 * torch.rand(6, 1, 2, 2, generator=g, dtype=torch.float64)
    return x, torch.tensor([1, 0, 2, 0, 1, 2])  # the clean argmax but for the 5th


def ctx(seed: int, epoch: int = 0) -> BatchContext:
    generator = torch.Generator().manual_seed(seed)
    return BatchContext(epoch=epoch, epochs=20, step=0, generator=generator)


# --- plain, per-example arithmetic (no method helpers) ----------------------------------------


def f(model: nn.Module, v: torch.Tensor) -> torch.Tensor:
    """Logits of ONE image: W·v + b, written out."""
    w, b = model[1].weight, model[1].bias
    return torch.stack([(w[c] * v.flatten()).sum() + b[c] for c in range(3)])


def softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max())
    return e / e.sum()


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p)).sum()


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p * (torch.log(p) - torch.log(q))).sum()


def noise(seed: int, sigma: float, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Generator]:
    """The draws the method makes first from ctx(seed).generator: σ·N(0, 1) of ``shape``."""
    g = torch.Generator().manual_seed(seed)
    return sigma * torch.randn(shape, generator=g, dtype=torch.float64), g


# --- stability -------------------------------------------------------------------------------


def test_stability_is_ce_plus_lambda_cross_entropy_of_noisy_to_clean() -> None:
    model, (x, y) = linear(), batch()
    out = get_method("stability", sigma=0.5, lam=2.0).loss(model, x, y, ctx(3))
    z, _ = noise(3, 0.5, tuple(x.shape))  # one draw per example
    model_ref = linear()
    terms = []
    for i in range(len(y)):
        p, q = softmax(f(model_ref, x[i])), softmax(f(model_ref, x[i] + z[i]))
        ce = -torch.log(p[y[i]])
        terms.append(ce - 2.0 * (p * torch.log(q)).sum())  # λ · H(p, q)
    expected = torch.stack(terms).mean()
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-12)
    # gradients flow through the clean softmax too (the authors do not detach it)
    out.loss.backward()
    expected.backward()
    assert torch.allclose(model[1].weight.grad, model_ref[1].weight.grad, atol=1e-12)
    # and it is stn's KL objective plus λ·H(clean prediction)
    stn = get_method("stn", sigma=0.5, lam=2.0).loss(linear(), x, y, ctx(3)).loss.item()
    h = torch.stack([entropy(softmax(f(model_ref, x[i]))) for i in range(6)]).mean().item()
    assert out.loss.item() == pytest.approx(stn + 2.0 * h, abs=1e-12)
    assert h > 0.1  # so the two objectives really differ
    assert get_method("stability").lam == 2.0  # Jeong & Shin's λ


# --- consistency -----------------------------------------------------------------------------


def consistency_by_hand(model, xs, y, z, lam, eta) -> torch.Tensor:
    """(1/B) Σ_i [ (1/m) Σ_j CE_ij + λ (1/m) Σ_j KL(p̂_i ‖ p_ij) + η H(p̂_i) ] (§3)."""
    total = []
    for i in range(len(y)):
        ps = [softmax(f(model, xs[i] + z[i, j])) for j in range(z.shape[1])]
        mean = sum(ps) / len(ps)
        ce = sum(-torch.log(p[y[i]]) for p in ps) / len(ps)
        reg = sum(kl(mean, p) for p in ps) / len(ps)
        total.append(ce + lam * reg + eta * entropy(mean))
    return torch.stack(total).mean()


def test_consistency_matches_the_hand_computed_objective() -> None:
    model, (x, y) = linear(), batch()
    out = get_method("consistency", sigma=0.5, num_noise=3, lam=10.0, eta=0.5).loss(
        model, x, y, ctx(4)
    )
    z, _ = noise(4, 0.5, (6, 3, 1, 2, 2))
    model_ref = linear()
    expected = consistency_by_hand(model_ref, x, y, z, 10.0, 0.5)
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-12)
    out.loss.backward()
    expected.backward()  # the mean prediction is not detached (authors' code)
    assert torch.allclose(model[1].weight.grad, model_ref[1].weight.grad, atol=1e-11)
    assert out.targets.tolist() == y.repeat_interleave(3).tolist()
    # the regularizer is not negligible here, so a missing term would show
    no_reg = consistency_by_hand(linear(), x, y, z, 0.0, 0.0)
    assert (expected - no_reg).item() > 0.1


def test_consistency_on_smoothadv_inputs_one_step_by_hand() -> None:
    """With T = 1 the attack is x' = x + ε·g/‖g‖ (step 2ε, projected back onto the ε-ball; the
    box does not bind here), g = ∇ of −log p̂_y over the same draws; ε warmed up."""
    model, (x, y) = linear(), batch()
    method = get_method(
        "consistency", sigma=0.25, num_noise=2, lam=5.0, eta=0.5, adversarial=True,
        eps=0.2, steps=1, warmup_epochs=4,
    )  # fmt: skip
    assert [method.epsilon(e) for e in range(5)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2])
    out = method.loss(model, x, y, ctx(5, epoch=1))
    assert out.stats["eps"] == pytest.approx(0.1)
    z, _ = noise(5, 0.25, (6, 2, 1, 2, 2))
    ref = linear()
    x_adv = []
    for i in range(6):
        xi = x[i].clone().requires_grad_(True)
        mean = (softmax(f(ref, xi + z[i, 0])) + softmax(f(ref, xi + z[i, 1]))) / 2
        (g,) = torch.autograd.grad(-torch.log(mean[y[i]]), xi)
        x_adv.append((x[i] + 0.1 * g / g.norm()).detach())
    x_adv = torch.stack(x_adv)
    assert x_adv.min() > 0.2 and x_adv.max() < 0.8  # the clamp to [0,1] is inactive
    expected = consistency_by_hand(ref, x_adv, y, z, 5.0, 0.5)
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-10)
    clean = consistency_by_hand(ref, x, y, z, 5.0, 0.5)
    assert expected.item() > clean.item() + 1e-3  # the attack moved the loss


# --- MACER -----------------------------------------------------------------------------------


def test_macer_matches_the_hand_computed_objective() -> None:
    model, (x, y) = linear(), batch()
    sigma, m, lam, gamma, beta = 0.5, 4, 3.0, 0.5, 2.0
    method = get_method(
        "macer", sigma=sigma, num_noise=m, lam=lam, margin=gamma, beta=beta, deferred_epochs=2
    )
    z, _ = noise(6, sigma, (6, m, 1, 2, 2))
    ref = linear()
    l_c, l_r, kinds = [], [], []
    for i in range(6):
        logits = [f(ref, x[i] + z[i, j]) for j in range(m)]
        g_hat = sum(softmax(v) for v in logits) / m
        l_c.append(-math.log(g_hat[y[i]].item()))
        g_beta = (sum(softmax(beta * v) for v in logits) / m).tolist()
        order = sorted(range(3), key=lambda c: -g_beta[c])
        if order[0] != y[i]:
            kinds.append("wrong")
            continue
        xi = norm.ppf(g_beta[order[0]]) - norm.ppf(g_beta[order[1]])  # scipy's Φ⁻¹
        kinds.append("inside" if xi <= gamma else "beyond")
        l_r.append(max(0.0, gamma - xi))
    assert {"wrong", "inside", "beyond"} <= set(kinds)  # every case of the hinge occurs
    classification = sum(l_c) / 6
    robust = sigma / 2 * sum(l_r) / 6
    out = method.loss(model, x, y, ctx(6, epoch=2))
    assert out.loss.item() == pytest.approx(classification + lam * robust, abs=1e-10)
    assert out.stats["robust"] == pytest.approx(robust, abs=1e-10)
    assert out.stats["hinge_frac"] == pytest.approx(kinds.count("inside") / 6)
    # deferred start: epochs 0 and 1 train the smoothed cross-entropy alone
    early = method.loss(linear(), x, y, ctx(6, epoch=1))
    assert early.loss.item() == pytest.approx(classification, abs=1e-10)
    assert early.stats["lam"] == 0.0


def test_macer_drops_examples_whose_soft_radius_is_infinite() -> None:
    """A β-softmax that rounds to one-hot gives Φ⁻¹ = ±inf; the authors drop such examples
    from the hinge, and the gradient stays finite."""
    model = linear()
    with torch.no_grad():
        model[1].weight.mul_(200.0)  # huge logits: β·f saturates for most examples
    x, y = batch()
    out = get_method("macer", sigma=0.1, num_noise=2, margin=8.0, beta=16.0).loss(
        model, x, y, ctx(1)
    )
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(model[1].weight.grad).all()
    z, _ = noise(1, 0.1, (6, 2, 1, 2, 2))
    saturated = 0
    for i in range(6):
        scores = sum(softmax(16.0 * f(model, x[i] + z[i, j])) for j in range(2)) / 2
        saturated += int(scores.argmax() == y[i] and scores.max().item() == 1.0)
    assert saturated >= 1  # right, yet Φ⁻¹(1) = inf: dropped from the hinge
    assert out.stats["hinge_frac"] <= (5 - saturated) / 6


# --- SmoothMix -------------------------------------------------------------------------------


def smoothmix_by_hand(seed, epoch, sigma, m, steps, alpha, eta, mix_step, warmup):
    model, (x, y) = linear(), batch()
    z, g = noise(seed, sigma, (6, m, 1, 2, 2))
    lam = torch.rand(6, generator=g, dtype=torch.float64) / 2  # drawn after the noise
    w = min(1.0, (epoch + 1) / warmup)
    total, clean_sides, advs = [], [], []
    for i in range(6):
        # 1. the adversary: fixed-length normalized steps, clamped to [0,1]
        xt, clean = x[i].clone(), x[i].clone()
        for t in range(steps):
            if t == mix_step:
                clean = xt.clone()
            xt = xt.detach().requires_grad_(True)
            mean = sum(softmax(f(model, xt + z[i, j])) for j in range(m)) / m
            (grad,) = torch.autograd.grad(-torch.log(mean[y[i]]), xt)
            xt = (xt + alpha * grad / grad.norm()).clamp(0, 1).detach()
        delta = clean - x[i]  # the one-step adversary's ball: radius w·α·mix_step
        radius = w * alpha * mix_step
        if delta.norm() > radius:
            clean = x[i] + delta * (radius / delta.norm())
        clean_sides.append(clean)
        advs.append(xt)
        # 2.-3. the loss
        ps = [softmax(f(model, clean + z[i, j])) for j in range(m)]
        p_hat = sum(ps) / m
        ce = sum(-torch.log(p[y[i]]) for p in ps) / m
        x_mix = (1 - lam[i]) * clean + lam[i] * xt
        target = (1 - lam[i]) * p_hat + lam[i] / 3
        mix = sum(kl(target, softmax(f(model, x_mix + z[i, j]))) for j in range(m)) / m
        right = float(int(p_hat.argmax()) == int(y[i]))
        total.append(ce + eta * w * right * mix)
    return model, torch.stack(total).mean(), torch.stack(clean_sides), torch.stack(advs)


@pytest.mark.parametrize("mix_step, epoch", [(0, 5), (1, 1)])
def test_smoothmix_matches_the_hand_computed_objective(mix_step: int, epoch: int) -> None:
    sigma, m, steps, alpha, eta = 0.5, 3, 3, 0.15, 5.0
    ref, expected, clean_sides, advs = smoothmix_by_hand(
        7, epoch, sigma, m, steps, alpha, eta, mix_step, warmup=4
    )
    model, (x, y) = linear(), batch()
    method = get_method(
        "smoothmix", sigma=sigma, num_noise=m, steps=steps, alpha=alpha, eta=eta,
        mix_step=mix_step, warmup_epochs=4,
    )  # fmt: skip
    out = method.loss(model, x, y, ctx(7, epoch=epoch))
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-10)
    out.loss.backward()
    expected.backward()  # the soft target is not detached (authors' code)
    assert torch.allclose(model[1].weight.grad, ref[1].weight.grad, atol=1e-10)
    # the adversary went T steps of α (no ball), the clean side is x or the one-step adversary
    dist = (advs - x).flatten(1).norm(dim=1)
    assert (dist > alpha).all() and (dist <= steps * alpha + 1e-12).all()
    moved = (clean_sides - x).flatten(1).norm(dim=1)
    if mix_step == 0:
        assert torch.equal(clean_sides, x)
    else:  # warm-up w = 2/4 halves the one-step adversary's radius α
        assert torch.allclose(moved, torch.full_like(moved, alpha / 2), atol=1e-12)
    # the mixup term is not negligible, so a missing or mis-weighted term would show
    _, no_mix, _, _ = smoothmix_by_hand(7, epoch, sigma, m, steps, alpha, 0.0, mix_step, 4)
    assert expected.item() - no_mix.item() > 1e-3


# --- hyperparameters: bad values, foreign flags, help ----------------------------------------


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("stability", {"lam": -1.0}, "lam must be >= 0"),
        ("consistency", {"num_noise": 1}, "num_noise must be an integer >= 2"),
        ("consistency", {"eta": -0.5}, "eta must be >= 0"),
        ("macer", {"margin": 0.0}, "margin must be > 0"),
        ("macer", {"beta": -1.0}, "beta must be > 0"),
        ("macer", {"sigma": 0.0}, "sigma must be > 0"),
        ("macer", {"deferred_epochs": -1}, "deferred_epochs must be an integer >= 0"),
        ("macer", {"num_noise": 0}, "num_noise must be a positive integer"),
        ("smoothmix", {"mix_step": 4, "steps": 4}, r"mix_step must be in 0\.\.steps-1 = 0\.\.3"),
        ("smoothmix", {"alpha": 0.0}, "alpha must be > 0"),
        ("smoothmix", {"steps": 0}, "steps must be a positive integer"),
        ("smoothmix", {"eta": -1.0}, "eta must be >= 0"),
        ("smoothmix", {"max_norm": 0.0}, "max_norm must be > 0"),
    ],
)
def test_new_methods_validate_hyperparameters(name, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        get_method(name, **kwargs)


@pytest.mark.parametrize(
    "method, flags, message",
    [
        ("macer", ["--margin", "-1"], "--margin must be > 0 and finite (float32), got -1.0"),
        ("smoothmix", ["--mix-step", "2", "--steps", "2"], "--mix-step must be in 0..steps-1"),
        ("macer", ["--eps", "0.5"], "--eps do(es) not apply to method 'macer'"),
        ("stability", ["--num-noise", "2"], "--num-noise do(es) not apply to method 'stability'"),
    ],
)
def test_cli_method_errors_are_one_line_and_write_nothing(tmp_path, method, flags, message):
    out = tmp_path / "run"
    r = smoothcert(
        "train", "--dataset", "mnist", "--arch", "cnn3", "--method", method, *flags,
        "--epochs", "1", "--out", out, "--no-progress", check=False,
    )  # fmt: skip
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists()


def test_train_help_lists_the_new_hyperparameters_with_defaults(capsys) -> None:
    from smoothcert.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in (
        "--margin FLOAT",
        "[defaults: macer: 8.0]",
        "[defaults: macer: 0]",  # --deferred-epochs
        "consistency: 10.0; macer: 12.0; stability: 2.0; stn: 1.0",  # --lam
        "consistency: 0.5; smoothmix: 5.0",  # --eta
        "[defaults: smoothmix: 0.5]",  # --alpha
        "[defaults: smoothmix: alpha*mix_step]",
        "[defaults: smoothmix: no ball]",
        "macer: 16.0; trades: 6.0",  # --beta
    ):
        assert fragment in text, fragment


# --- in the training loop: resume within an epoch --------------------------------------------

LOOP_OPTIONS = {
    "stability": {"sigma": 0.25},
    "consistency": {"sigma": 0.25, "num_noise": 2, "adversarial": True, "eps": 0.5,
                    "steps": 1, "warmup_epochs": 2},
    "macer": {"sigma": 0.25, "num_noise": 4, "deferred_epochs": 1},
    "smoothmix": {"sigma": 0.25, "num_noise": 2, "steps": 2, "alpha": 0.5, "mix_step": 1,
                  "warmup_epochs": 2},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LOOP_OPTIONS))
def test_interrupted_mid_epoch_resumes_to_the_uninterrupted_weights(
    tmp_path, monkeypatch, mnist_train, name
) -> None:
    """Epoch 2 of 2 (past MACER's deferred start, inside the warm-ups), cut after its first
    batch: the resumed run ends with the uninterrupted run's weights, bit for bit."""
    from safetensors.torch import load_file

    from smoothcert.training import TrainConfig, method_class, train

    def config(out) -> TrainConfig:
        return TrainConfig(
            dataset="mnist", arch="cnn3", method=name, method_options=LOOP_OPTIONS[name],
            epochs=2, batch_size=32, lr=0.05, schedule="constant", seed=2, out_dir=str(out),
            checkpoint_every=1, test_subset=8,
        )  # fmt: skip

    data = dict(train_set=mnist_train.subset(96), test_set=None, progress=False)
    ref = train(config(tmp_path / "ref"), **data)
    cls, original, calls = method_class(name), method_class(name).loss, [0]

    def cut(self, *args):
        calls[0] += 1
        if calls[0] > 4:  # 3 batches per epoch: stop during the 2nd batch of epoch 2
            raise KeyboardInterrupt
        return original(self, *args)

    with monkeypatch.context() as m:
        m.setattr(cls, "loss", cut)
        with pytest.raises(KeyboardInterrupt):
            train(config(tmp_path / "cut"), **data)
    lines: list[str] = []
    resumed = train(config(tmp_path / "cut"), **data, log=lines.append)
    assert lines[0] == f"resuming {tmp_path / 'cut'} in epoch 2/2 after batch 1"
    a, b = load_file(str(ref.last_checkpoint)), load_file(str(resumed.last_checkpoint))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
