"""The Gaussian-noise defence as a training knob (issue #12, item 5: ``method_params.smashed_noise_sigma``).

What the server receives is checked where it receives it: a hook on the head (what the client computed), the
ledger (what was sent) and a hook on the server's body (what it computed on). σ = 0 changes nothing; σ > 0 adds
exactly N(0, σ²) noise at every send site of every split method, and nowhere else; the methods that send only
parameters do not have the knob.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.errors import ConfigError
from benchmark.federation.method import gaussian_noise
from benchmark.federation.params import SplitParams
from benchmark.methods import create_method, method_class
from benchmark.privacy import add_noise
from tests.test_methods import ALL, make_cfg, make_data

SPLIT = ["sfl_v1", "sfl_v2", "sfprompt"]
SIGMA = 0.5
NOISE = "method_params.smashed_noise_sigma"


def run(method: str, rounds: int = 2, **over):
    m = create_method(make_cfg(method, **{"train.rounds": rounds}, **over), make_data())
    m.run()
    return m


def watch(m) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Instrument ``m``: returns a list that fills with (head output, sent tensor) per smashed message while the
    run trains, and checks that the server's body computes on exactly the tensor last sent."""
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    last: dict[str, torch.Tensor] = {}

    def head_out(module, args, out):
        last["head"] = out.detach().clone()

    def body_in(module, args):
        if module.training and "sent" in last:  # evaluation (eval mode) runs the whole model locally
            assert torch.equal(args[0].detach(), last.pop("sent")), "the server computed on something not sent"

    record = m.comm.record

    def spy(rnd, client, phase, direction, kind, tensors):
        if kind == "smashed":
            last["sent"] = tensors.detach().clone()
            pairs.append((last["head"], last["sent"]))
        return record(rnd, client, phase, direction, kind, tensors)

    m.model.head.register_forward_hook(head_out)
    m.model.body.register_forward_pre_hook(body_in)
    m.comm.record = spy
    return pairs


def trained(m) -> dict[str, torch.Tensor]:
    return {**m.global_client, **m.global_server}


@pytest.mark.parametrize("method", SPLIT)
def test_sigma_zero_is_the_default_and_bit_identical(method):
    default, zero = run(method), run(method, **{NOISE: 0.0})
    assert method_class(method).params(make_cfg(method)).smashed_noise_sigma == 0.0
    for k, v in trained(default).items():
        assert torch.equal(zero.global_client.get(k, zero.global_server.get(k)), v), k
    assert default.metrics == zero.metrics
    assert default.comm.frame().equals(zero.comm.frame())
    assert zero._noise_stream == (None, None, None)  # σ = 0 draws nothing


@pytest.mark.parametrize("method", SPLIT)
@pytest.mark.parametrize("sigma", [0.0, SIGMA])
def test_the_server_receives_the_head_output_plus_exactly_the_noise_at_every_send(method, sigma):
    m = create_method(make_cfg(method, **{"train.rounds": 2, NOISE: sigma}), make_data())
    pairs = watch(m)
    m.run()
    ledger = m.comm.frame()
    assert len(pairs) == ledger[ledger.kind == "smashed"].messages.sum() > 2  # every smashed message went through the spy
    diffs = [sent - head for head, sent in pairs]
    if sigma == 0:
        assert all(torch.equal(d, torch.zeros_like(d)) for d in diffs)
        return
    assert all(bool((d != 0).all()) for d in diffs), "a send site sent smashed data without the noise"
    assert not torch.equal(diffs[0], diffs[1])  # fresh draws per message
    noise = torch.cat([d.flatten() for d in diffs]).double()
    assert noise.numel() > 20_000
    assert noise.std().item() == pytest.approx(sigma, rel=0.03)  # σ absolute, in activation units
    assert abs(noise.mean().item()) < 4 * sigma / noise.numel() ** 0.5


@pytest.mark.parametrize("method", SPLIT)
def test_noise_leaves_the_bytes_alone_and_changes_training(method):
    clean, noisy = run(method), run(method, **{NOISE: SIGMA})
    assert clean.comm.frame().equals(noisy.comm.frame())  # every message, element and byte
    assert any(not torch.equal(v, trained(noisy)[k]) for k, v in trained(clean).items())


@pytest.mark.parametrize("method", SPLIT)
def test_noise_is_seeded_and_a_resumed_run_draws_the_same(method):
    whole, again = run(method, **{NOISE: SIGMA}), run(method, **{NOISE: SIGMA})
    assert whole.metrics == again.metrics
    part = create_method(make_cfg(method, **{"train.rounds": 2, NOISE: SIGMA}), make_data())
    part.run_round(0)
    resumed = create_method(make_cfg(method, **{"train.rounds": 2, NOISE: SIGMA}), make_data())
    resumed.load_state_dict(part.state_dict())
    resumed.run()
    for k, v in trained(whole).items():
        assert torch.equal(trained(resumed)[k], v), k
    assert resumed.metrics == whole.metrics
    other_seed = run(method, **{NOISE: SIGMA, "seed": 1})
    assert other_seed.metrics != whole.metrics


def test_sfprompt_self_update_sends_nothing_and_sees_no_noise():
    """Round 0's local-loss update and EL2N pruning come before any send: identical with and without noise."""
    clean, noisy = run("sfprompt"), run("sfprompt", **{NOISE: SIGMA})
    pick = lambda m: [x for x in m.metrics if x[0] == 0 and x[3] in ("local_loss", "kept")]  # noqa: E731
    assert pick(clean) and pick(clean) == pick(noisy)
    ledger = noisy.comm.frame()
    assert set(ledger[ledger.kind == "smashed"].phase) == {"split"}


@pytest.mark.parametrize("method", [m for m in ALL if m not in SPLIT])
def test_methods_that_send_only_parameters_have_no_noise_knob(method):
    assert not issubclass(method_class(method).Params, SplitParams)
    with pytest.raises(ConfigError, match="unknown config key 'method_params.smashed_noise_sigma'"):
        create_method(make_cfg(method, **{NOISE: SIGMA}), make_data())


def test_sigma_must_be_finite_and_non_negative():
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="smashed_noise_sigma"):
            method_class("sfl_v1").params(make_cfg("sfl_v1", **{NOISE: bad}))


def test_training_and_the_privacy_evaluation_add_the_same_noise():
    x = torch.randn(4, 5, 6)
    a = gaussian_noise(x, 0.3, torch.Generator().manual_seed(7))
    b = add_noise(x, 0.3, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert gaussian_noise(x, 0.0) is x


@pytest.mark.parametrize("method", SPLIT)
def test_sigma_zero_keeps_the_config_hash_a_run_had_before_the_knob(method):
    """Existing results and resumable checkpoints stay valid: σ = 0 (filled in by resolve_config) hashes as if the
    key did not exist; σ > 0 is another run."""
    from benchmark.methods import resolve_config

    cfg = resolve_config(make_cfg(method))
    assert cfg.method_params["smashed_noise_sigma"] == 0.0
    params = {k: v for k, v in cfg.method_params.items() if k != "smashed_noise_sigma"}
    before = dataclasses.replace(cfg, method_params=params)  # what resolve_config gave before the knob existed
    assert cfg.hash() == before.hash()
    assert resolve_config(make_cfg(method, **{NOISE: SIGMA})).hash() != cfg.hash()
