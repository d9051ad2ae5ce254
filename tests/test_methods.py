"""The methods are the methods: equivalence tests against plain back-propagation (after minGPT's check of
its model against a reference), frozen-parameter checks, and analytic accounting == a real run's ledgers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.accounting.analytic import method_round
from benchmark.config import from_dict
from benchmark.data.federated import FederatedData
from benchmark.errors import NumericError, UnknownNameError
from benchmark.federation.method import METHODS, create_method, method_class

ALL = ["fedavg", "fedprompt", "sfl_v1", "sfl_v2", "sfprompt"]


def make_data(n: int = 48, clients: int = 2, classes: int = 3, img: int = 16, seed: int = 0) -> FederatedData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, img, img), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % classes
    parts = np.array_split(np.arange(n), clients)
    return FederatedData(images, labels, images[:12].clone(), labels[:12].clone(), [p.astype(np.int64) for p in parts],
                         [f"c{i}" for i in range(classes)], (0.5,) * 3, (0.5,) * 3, img)


def make_cfg(method: str, **over):
    raw = {
        "seed": 0,
        "model": {"backbone": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 4,
                  "num_heads": 2, "head_blocks": 1, "tail_blocks": 1, "prompt_len": 3},
        "partition": {"num_clients": 2},
        "train": {"method": method, "rounds": 1, "batch_size": 8, "lr": 0.05, "momentum": 0.0},
    }
    for key, value in over.items():
        node = raw
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return from_dict(raw)


def test_registry_lists_all_methods():
    method_class("fedavg")
    assert set(ALL) <= set(METHODS.names())
    with pytest.raises(UnknownNameError, match="valid: .*fedavg.*sfprompt"):
        method_class("fedsgd")


def test_one_client_fedavg_step_equals_plain_sgd():
    data = make_data(n=8, clients=1)
    cfg = make_cfg("fedavg", **{"partition.num_clients": 1, "train.batch_size": 8, "train.momentum": 0.9})
    m = create_method(cfg, data)
    ref = {k: v.clone() for k, v in m.model.state_dict().items()}
    # the reference: one SGD step of the same model on the same batch, outside the federation
    ref_model = create_method(cfg, data).model
    opt = torch.optim.SGD(ref_model.parameters(), lr=0.05, momentum=0.9)
    x, y = next(iter(m.batches(data.client_indices[0], 0, 0, 0)))
    F.cross_entropy(ref_model(x), y).backward()
    opt.step()
    m.run()
    changed = 0
    for k, v in ref_model.state_dict().items():
        assert torch.equal(m.global_client[k], v), k
        changed += not torch.equal(v, ref[k])
    assert changed > 10  # the step really moved the weights


def test_sfl_v1_one_client_equals_fedavg():
    """Split learning is exact back-propagation: same batches and lr give the same parameters."""
    data = make_data(n=24, clients=1)
    over = {"partition.num_clients": 1, "train.rounds": 2, "train.momentum": 0.9}
    fed = create_method(make_cfg("fedavg", **over), data)
    sfl = create_method(make_cfg("sfl_v1", **over), data)
    fed.run()
    sfl.run()
    merged = {**sfl.global_client, **sfl.global_server}
    assert set(merged) == set(fed.global_client)
    for k, v in fed.global_client.items():
        torch.testing.assert_close(merged[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_sfprompt_prompt_gradient_through_server_equals_unsplit():
    data = make_data()
    m = create_method(make_cfg("sfprompt"), data)
    x, y = next(iter(m.batches(data.client_indices[0], 0, 0, 0)))
    prompts = m.model.head.prompts.tokens
    # reference: autograd through the unsplit model
    F.cross_entropy(m.model(x), y).backward()
    ref = prompts.grad.clone()
    prompts.grad = None
    # the split path: cut, server backward through the frozen body, gradient down
    h = m.model.head(x)
    smashed = h.detach().requires_grad_(True)
    b = m.model.body(smashed)
    body_out = b.detach().requires_grad_(True)
    F.cross_entropy(m.model.tail(body_out), y).backward()
    b.backward(body_out.grad)
    h.backward(smashed.grad)
    torch.testing.assert_close(prompts.grad, ref, rtol=1e-5, atol=1e-7)
    assert ref.abs().sum() > 0


@pytest.mark.parametrize("method", ["fedprompt", "sfprompt"])
def test_frozen_parameters_stay_bit_identical(method):
    data = make_data()
    m = create_method(make_cfg(method), data)
    frozen = {k: p.detach().clone() for k, p in m.model.named_parameters() if not p.requires_grad}
    trained = {k: p.detach().clone() for k, p in m.model.named_parameters() if p.requires_grad}
    m.run()
    for k, p in m.model.named_parameters():
        if k in frozen:
            assert torch.equal(p, frozen[k]), k
    assert any(not torch.equal(m.global_client[k], v) for k, v in trained.items())
    assert frozen and all(k not in m.global_client for k in frozen)


@pytest.mark.parametrize("method", ALL)
def test_analytic_accounting_matches_a_real_run(method):
    """The accounting verb's per-client numbers equal the ledgers of a real run, exactly."""
    data = make_data(n=50, clients=2)  # 25 samples each: partial last batches
    cfg = make_cfg(method, **{"train.keep_ratio": 0.3, "train.local_epochs": 2, "train.split_epochs": 2})
    m = create_method(cfg, data)
    m.run()
    comm, flops = m.comm.frame(), m.compute.frame()
    cls = method_class(method)
    model = cls.prepare_model(cfg, data.num_classes)
    for c, idx in enumerate(data.client_indices):
        exp_comm, exp_flops = method_round(cls, model, cfg, len(idx))
        got = comm[(comm["round"] == 0) & (comm.client == c)].drop(columns=["round", "client"])
        key = ["phase", "direction", "kind"]
        got = got.sort_values(key).reset_index(drop=True)
        exp = exp_comm.sort_values(key).reset_index(drop=True)
        assert got[key + ["dtype"]].astype(str).equals(exp[key + ["dtype"]].astype(str))
        for col in ("numel", "bytes", "messages"):
            assert got[col].tolist() == exp[col].tolist(), col
        gotf = flops[(flops["round"] == 0) & (flops.client == c)].drop(columns=["round", "client"])
        gotf = gotf.sort_values(["phase", "party"]).reset_index(drop=True)
        expf = exp_flops.sort_values(["phase", "party"]).reset_index(drop=True)
        for col in ("phase", "party", "samples", "forward", "backward_activation", "backward_weight", "total"):
            assert gotf[col].tolist() == expf[col].tolist(), col


def test_bytes_are_numel_times_element_size_for_sfprompt():
    data = make_data(n=20, clients=1)
    cfg = make_cfg("sfprompt", **{"partition.num_clients": 1, "train.keep_ratio": 0.5, "train.batch_size": 4})
    m = create_method(cfg, data)
    m.run()
    comm = m.comm.frame()
    smashed = comm[comm.kind == "smashed"].iloc[0]
    kept = 10  # ceil(0.5 * 20)
    tokens = 16 + 1 + 3  # patches + CLS + prompts
    assert smashed.numel == kept * tokens * 32
    assert smashed.bytes == smashed.numel * 4
    assert smashed.messages == 3  # batches of 4, 4, 2
    up = comm[(comm.phase == "upload")].bytes.sum()
    tail_and_prompts = sum(p.numel() for k, p in m.model.named_parameters() if k.startswith(("tail.", "head.prompts.")))
    assert up == tail_and_prompts * 4


def test_sfprompt_keeps_the_hardest_samples():
    data = make_data(n=20, clients=1)
    m = create_method(make_cfg("sfprompt", **{"partition.num_clients": 1, "train.keep_ratio": 0.25}), data)
    kept = m.prune(0, 0)
    assert len(kept) == 5
    with torch.no_grad():
        m.model.eval()
        x = data.prepare(data.train_images, m.device)
        logits = m.model.client_path(x)
    from benchmark.sfprompt import el2n_scores

    scores = el2n_scores(logits, data.train_labels).numpy()
    assert scores[kept].min() >= np.delete(scores, kept).max()


def test_ablation_settings_change_what_runs():
    data = make_data(n=16, clients=1)
    base = {"partition.num_clients": 1}
    no_local = create_method(make_cfg("sfprompt", **base, **{"train.local_loss_epochs": 0}), data)
    no_local.run()
    assert "local_loss" not in set(no_local.compute.frame().phase)
    no_grad = create_method(make_cfg("sfprompt", **base, **{"train.prompt_grad_via_server": False}), data)
    no_grad.run()
    assert "grad" not in set(no_grad.comm.frame().kind)
    no_prompt = create_method(make_cfg("sfprompt", **base, **{"model.prompt_len": 0}), data)
    assert no_prompt.model.head.prompts is None
    no_prune = create_method(make_cfg("sfprompt", **base, **{"train.keep_ratio": 1.0}), data)
    no_prune.run()
    assert no_prune.metrics_frame().query("metric == 'kept'").value.iloc[0] == 16


def test_nan_loss_stops_with_one_clear_line():
    data = make_data(n=16, clients=1)
    m = create_method(make_cfg("fedavg", **{"partition.num_clients": 1, "train.lr": 1e30}), data)
    with pytest.raises(NumericError, match=r"fedavg: non-finite training loss .* round \d+, client 0"):
        for _ in range(5):
            m.run_round(m.next_round)


def test_degenerate_split_is_warned():
    data = make_data(n=16, clients=1)
    with pytest.warns(UserWarning, match="degenerate"):
        m = create_method(make_cfg("sfprompt", **{"model.head_blocks": 0, "model.tail_blocks": 0}), data)
    assert m.warnings


def test_partial_participation_samples_seeded_subsets():
    data = make_data(n=40, clients=4)
    m = create_method(make_cfg("fedavg", **{"partition.num_clients": 4, "train.participation": 0.5}), data)
    picks = [m.sample_clients(r) for r in range(6)]
    assert all(len(p) == 2 for p in picks)
    assert len({tuple(p) for p in picks}) > 1
    assert picks == [m.sample_clients(r) for r in range(6)]
