"""The methods are the methods: equivalence tests against plain back-propagation and hand-written references
(after minGPT's check of its model against a reference), frozen-parameter checks, analytic accounting == a real
run's ledgers, and the ledgers == an independent FLOP count (FlopCounterMode) of the phases actually run."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from benchmark import method_catalog, seeding
from benchmark.analytic import FLOP_CONVENTION, accounting_table, comm_rows, format_table, method_round
from benchmark.accounting.flops import unfused_attention
from benchmark.config import from_dict
from benchmark.data.federated import FederatedData
from benchmark.errors import ConfigError, NumericError, UnknownNameError
from benchmark.federation.method import Method, register_method
from benchmark.methods import METHODS, create_method, federated_methods, method_class, ordered
from benchmark.report.tables import MINIMAL_READING

ALL = ordered()  # every registered method and reference: a new one is covered the moment it registers


def make_data(n: int = 48, clients: int = 2, classes: int = 3, img: int = 16, seed: int = 0,
              sizes: list[int] | None = None) -> FederatedData:
    """Random uint8 images; ``sizes`` gives clients of unequal size (else ``n`` split evenly)."""
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes) if sizes else n
    images = torch.randint(0, 256, (n, 3, img, img), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % classes
    if sizes:
        parts = np.split(np.arange(n), np.cumsum(sizes)[:-1])
    else:
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
    assert {"fedavg", "fedprompt", "sfl_v1", "sfl_v2", "sfprompt", "linear_probe"} <= set(METHODS.names())
    assert ordered()[:5] == ["fedavg", "fedprompt", "sfl_v1", "sfl_v2", "sfprompt"]
    with pytest.raises(UnknownNameError, match="valid: .*fedavg.*sfprompt"):
        method_class("fedsgd")


def test_the_catalogue_is_the_registrys_built_in_methods_with_their_params():
    """A workflow's parse checks method names and ``method_params`` through benchmark.method_catalog, without the
    registry (torch): for every method of the package it must say what the registry says."""
    builtin = {n: METHODS.get(n) for n in METHODS.names()
               if METHODS.get(n).__module__.split(".")[0] in ("baselines", "benchmark")}
    assert {n: cls.Params for n, cls in builtin.items()} == method_catalog.BUILTIN
    for name, cls in builtin.items():
        assert method_catalog.method_name(name) == name
        assert cls.params.__func__ is Method.params.__func__, f"{name} overrides params(); the catalogue would not"
    assert method_catalog.federated_methods() == federated_methods()
    good, bad, unknown = ({"keep_ratio": 0.25}, {"keep_ratio": 2.0}, {"keep_rato": 0.5})
    for params in (good, bad, unknown):
        cfg = make_cfg("sfprompt", method_params=params)
        outcomes = []
        for check in (method_catalog.method_params, METHODS.get("sfprompt").params):
            try:
                outcomes.append(check(cfg))
            except ConfigError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], params
    with pytest.raises(UnknownNameError, match="valid: .*fedavg.*sfprompt"):
        method_catalog.method_name("fedsgd")


def test_register_method_names_the_class_and_labels_it_unless_it_has_a_label(monkeypatch):
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))  # the registry is restored after the test

    class Plain(Method):
        pass

    class Labelled(Method):
        label = "Shown"

    assert register_method("probe_plain")(Plain) is Plain and register_method("probe_label")(Labelled) is Labelled
    assert (Plain.name, Plain.label, Labelled.name, Labelled.label) == ("probe_plain", "probe_plain", "probe_label",
                                                                        "Shown")
    assert METHODS.get("probe_plain") is Plain and METHODS.get("probe_label") is Labelled


def test_a_method_rejects_unknown_or_inconsistent_params_in_one_line():
    data = make_data(n=8, clients=1)
    with pytest.raises(ConfigError, match=r"unknown config key 'method_params.keep'; valid keys .*keep_ratio"):
        create_method(make_cfg("sfprompt", **{"partition.num_clients": 1, "method_params.keep": 0.5}), data)
    with pytest.raises(ConfigError, match=r"unknown config key 'method_params.keep_ratio'"):
        create_method(make_cfg("fedavg", **{"partition.num_clients": 1, "method_params.keep_ratio": 0.5}), data)
    with pytest.raises(ConfigError, match=r"local_samples|local_loss_samples': kept needs el2n_timing"):
        create_method(make_cfg("sfprompt", **{"partition.num_clients": 1, "method_params.local_loss_samples": "kept"}),
                      data)


# ----------------------------------------------------------------------------------------------------------
# equivalence with plain SGD and hand-written references


def _sgd_client(model, batches, lr: float, keys: list[str], momentum: float = 0.0,
                weight_decay: float = 0.0) -> dict[str, torch.Tensor]:
    """SGD (plain unless ``momentum`` / ``weight_decay``) of the parameters ``keys`` over ``batches``, one step
    per batch; returns their trained state."""
    params = dict(model.named_parameters())
    opt = torch.optim.SGD([params[k] for k in keys], lr=lr, momentum=momentum, weight_decay=weight_decay)
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {k: params[k].detach().clone() for k in keys}


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



def test_fedavg_local_work_over_batches_and_epochs_is_the_hand_written_loop_bit_for_bit():
    """FedAvg's local work (2 epochs of 8, 8, 4 samples; momentum, weight decay, gradient clipping) equals the plain
    loop written out by hand, to the bit: the same weights and the same reported loss (summed as loss × batch
    size on the device, divided by the samples once at the end, so a partial batch weighs what it holds)."""
    data = make_data(n=20, clients=1)
    m = create_method(make_cfg("fedavg", **{"partition.num_clients": 1, "train.local_epochs": 2, "train.momentum": 0.9,
                                            "train.weight_decay": 0.05, "train.grad_clip": 1.0}), data)
    ref = copy.deepcopy(m.model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=0.05)
    loss_sum = torch.zeros(())
    for epoch in range(2):
        for x, y in m.batches(data.client_indices[0], 0, 0, epoch):
            loss = F.cross_entropy(ref(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in ref.parameters() if p.grad is not None], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * len(y)
    upd = m.local_update(0, 0)
    assert upd.samples == 20 and upd.loss == float(loss_sum) / 40
    for (k, p), q in zip(m.model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), k
    assert m.compute.frame().samples.tolist() == [40]


def test_train_epochs_steps_each_seeded_batch_of_each_epoch_and_weighs_the_loss_by_samples():
    """The one local training loop every method's local work runs: ``epochs`` passes over the seeded batches of the
    given stream, the step called once per batch with its epoch (and indices), the sample-weighted mean of the
    returned losses, charged as that many samples."""
    m = create_method(make_cfg("fedavg", **{"partition.num_clients": 1}), make_data(n=20, clients=1))
    idx = m.data.client_indices[0]
    seen = []

    def step(epoch, x, y, index):
        seen.append((epoch, index.tolist()))
        return torch.tensor(float(len(seen)))  # the k-th batch's loss is k

    loss = m.train_epochs(0, 0, idx, 2, m.phase, step, stream="probe", with_index=True)
    assert seen == [(e, b.tolist()) for e in range(2) for *_, b in m.batches(idx, 0, 0, e, "probe", with_index=True)]
    assert [len(b) for _, b in seen] == [8, 8, 4, 8, 8, 4] and seen[0][1] != seen[3][1]
    assert loss == (1 * 8 + 2 * 8 + 3 * 4 + 4 * 8 + 5 * 8 + 6 * 4) / 40
    assert m.compute.frame().samples.tolist() == [40]
    with pytest.raises(NumericError, match="non-finite training loss"):
        m.train_epochs(0, 0, idx, 1, m.phase, lambda epoch, x, y: torch.tensor(float("nan")))


UNEQUAL = [10, 22, 6]


def test_fedavg_over_unequal_clients_equals_a_hand_written_weighted_average():
    """FedAvg (McMahan et al., Alg. 1) weights each client by its sample count: checked with 3 clients of
    unequal size over 2 rounds against an average written out here."""
    data = make_data(sizes=UNEQUAL)
    cfg = make_cfg("fedavg", **{"partition.num_clients": 3, "train.rounds": 2})
    m = create_method(cfg, data)
    ref = create_method(cfg, data)  # same init; its model is trained by hand below
    keys = list(ref.global_client)
    global_state = {k: v.clone() for k, v in ref.global_client.items()}
    for rnd in range(2):
        total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in global_state.items()}
        for c, idx in enumerate(data.client_indices):
            ref._load(global_state)
            state = _sgd_client(ref.model, list(ref.batches(idx, rnd, c, 0)), 0.05, keys)
            for k in keys:
                total[k] += state[k].double() * len(idx)
        global_state = {k: (v / sum(UNEQUAL)).float() for k, v in total.items()}
    m.run()
    for k in keys:
        torch.testing.assert_close(m.global_client[k], global_state[k], rtol=1e-5, atol=1e-6, msg=k)


def test_sfl_v1_equals_fedavg_with_unequal_clients_over_rounds():
    """Split learning is exact back-propagation and V1 averages its server copies with FedAvg's weights, so
    with every client taking part SFL-V1 is FedAvg: 3 unequal clients, 3 rounds, momentum and (joint)
    gradient clipping on."""
    data = make_data(sizes=UNEQUAL)
    over = {"partition.num_clients": 3, "train.rounds": 3, "train.momentum": 0.9, "train.grad_clip": 0.5}
    fed = create_method(make_cfg("fedavg", **over), data)
    sfl = create_method(make_cfg("sfl_v1", **over), data)
    fed.run()
    sfl.run()
    merged = {**sfl.global_client, **sfl.global_server}
    assert set(merged) == set(fed.global_client)
    for k, v in fed.global_client.items():
        torch.testing.assert_close(merged[k], v, rtol=1e-5, atol=1e-6, msg=k)


def _sfl_v2_reference(cfg, data, rounds: int) -> dict[str, torch.Tensor]:
    """SFL-V2 written out: one server part trained by the clients in a random order per round (seeded as
    (seed, "client_order", round)), each client's head from the round's global head; heads averaged by
    sample count. Plain SGD, a fresh optimiser per client on each side."""
    ref = create_method(cfg, data)
    model = ref.model
    params = dict(model.named_parameters())
    heads = [k for k in params if k.startswith("head.")]
    server = [k for k in params if k.startswith(("body.", "tail."))]
    head_state = {k: params[k].detach().clone() for k in heads}
    for rnd in range(rounds):
        order = seeding.rng(cfg.seed, "client_order", rnd).permutation(len(data.client_indices))
        total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in head_state.items()}
        for c in order:
            idx = data.client_indices[c]
            ref._load(head_state)  # the server part carries on from the previous client
            state = _sgd_client(model, list(ref.batches(idx, rnd, int(c), 0)), cfg.train.lr, heads + server)
            for k in heads:
                total[k] += state[k].double() * len(idx)
        head_state = {k: (v / sum(len(i) for i in data.client_indices)).float() for k, v in total.items()}
    return {**head_state, **{k: params[k].detach().clone() for k in server}}


def test_sfl_v2_equals_a_sequential_reference_and_differs_from_v1():
    data = make_data(sizes=UNEQUAL)
    over = {"partition.num_clients": 3, "train.rounds": 2}
    v2 = create_method(make_cfg("sfl_v2", **over), data)
    v2.run()
    expected = _sfl_v2_reference(make_cfg("sfl_v2", **over), data, 2)
    got = {**v2.global_client, **v2.global_server}
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6, msg=k)
    v1 = create_method(make_cfg("sfl_v1", **over), data)
    v1.run()
    assert any(not torch.allclose(v1.global_server[k], v2.global_server[k]) for k in v1.global_server)


def test_split_learning_does_the_arithmetic_of_fedavg_split_in_two():
    """Per sample, SplitFed's client cost (head) plus server cost (the rest, with the gradient at the cut sent
    back) is FedAvg's training cost of the whole model, term by term."""
    cfg = make_cfg("sfl_v1")
    model = method_class("sfl_v1").prepare_model(cfg, 3)
    split = [cost for _, cost in method_class("sfl_v1").per_sample_costs(model, cfg).values()]
    whole = method_class("fedavg").per_sample_costs(method_class("fedavg").prepare_model(cfg, 3), cfg)
    total = split[0] + split[1]
    (_, fed), = whole.values()
    assert (total.forward, total.backward_activation, total.backward_weight) == (
        fed.forward, fed.backward_activation, fed.backward_weight)


def test_gaussian_noise_is_drawn_in_the_tensors_dtype():
    from benchmark.federation.method import gaussian_noise

    x = torch.zeros(4, 3, dtype=torch.float64)
    got = gaussian_noise(x, 0.5, torch.Generator().manual_seed(1))
    expected = 0.5 * torch.randn((4, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert got.dtype == torch.float64 and torch.equal(got, expected)
    assert gaussian_noise(x, 0.0) is x


def test_smashed_noise_continues_one_stream_per_round_and_client():
    """Successive sends of one (round, client) draw successive noise from the generator of (seed,
    "smashed_noise", round, client): no batch repeats another's noise; a new client starts its own stream."""
    m = create_method(make_cfg("sfl_v1", **{"method_params.smashed_noise_sigma": 0.5}), make_data())
    zeros = torch.zeros(2, 3)
    sends = [m.send_smashed(0, c, "split", zeros) for c in (0, 0, 0, 1)]
    gen = seeding.torch_generator(0, "smashed_noise", 0, 0)
    expected = [0.5 * torch.randn((2, 3), generator=gen) for _ in range(3)]
    expected.append(0.5 * torch.randn((2, 3), generator=seeding.torch_generator(0, "smashed_noise", 0, 1)))
    for got, exp in zip(sends, expected):
        assert torch.equal(got, exp)


def test_sfl_v2_draws_a_seeded_order_each_round_unless_sorted():
    data = make_data(n=40, clients=5)
    m = create_method(make_cfg("sfl_v2", **{"partition.num_clients": 5}), data)
    orders = [m.client_order(r, list(range(5))) for r in range(6)]
    assert all(sorted(o) == list(range(5)) for o in orders) and len({tuple(o) for o in orders}) > 1
    assert orders == [m.client_order(r, list(range(5))) for r in range(6)]
    fixed = create_method(make_cfg("sfl_v2", **{"partition.num_clients": 5, "method_params.client_order": "sorted"}),
                          data)
    assert fixed.client_order(3, list(range(5))) == list(range(5))


def _sfl_v2_sgd_reference(cfg, data, per_batch: bool) -> dict[str, torch.Tensor]:
    """SFL-V2 written out with the run's SGD (momentum, weight decay) and ``local_epochs``: the clients in the
    seeded order of each round, each head from the round's global head, the server part carried on from client
    to client; the server optimiser is fresh for each client (``per_client``) or for each batch (``per_batch``,
    so its momentum never accumulates); heads averaged by sample count."""
    t = cfg.train
    ref = create_method(cfg, data)
    params = dict(ref.model.named_parameters())
    heads = [k for k in params if k.startswith("head.")]
    server = [params[k] for k in params if k.startswith(("body.", "tail."))]
    sgd = lambda ps: torch.optim.SGD(ps, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)  # noqa: E731
    head_state = {k: params[k].detach().clone() for k in heads}
    sizes = [len(i) for i in data.client_indices]
    for rnd in range(t.rounds):
        total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in head_state.items()}
        for c in seeding.rng(cfg.seed, "client_order", rnd).permutation(len(sizes)).tolist():
            ref._load(head_state)
            head_opt, server_opt = sgd([params[k] for k in heads]), sgd(server)
            for epoch in range(t.local_epochs):
                for x, y in ref.batches(data.client_indices[c], rnd, c, epoch):
                    if per_batch:
                        server_opt = sgd(server)
                    F.cross_entropy(ref.model(x), y).backward()
                    for opt in (head_opt, server_opt):
                        opt.step()
                        opt.zero_grad(set_to_none=True)
            for k in heads:
                total[k] += params[k].detach().double() * sizes[c]
        head_state = {k: (v / sum(sizes)).float() for k, v in total.items()}
    return {**head_state, **{k: params[k].detach().clone() for k in params if not k.startswith("head.")}}


def test_sfl_v2_server_optimiser_lifetime_shows_with_momentum():
    """With momentum 0.9, weight decay, 2 local epochs of 2-3 batches and 2 rounds, SFL-V2 equals the
    sequential reference under both server-optimiser lifetimes, and the two lifetimes train different models
    (at momentum 0 they could not differ: SGD without momentum has no state to keep)."""
    data = make_data(sizes=UNEQUAL)
    got = {}
    for lifetime in ("per_client", "per_batch"):
        cfg = make_cfg("sfl_v2", **{"partition.num_clients": 3, "train.rounds": 2, "train.local_epochs": 2,
                                    "train.momentum": 0.9, "train.weight_decay": 0.01,
                                    "method_params.server_optimizer": lifetime})
        m = create_method(cfg, data)
        m.run()
        got[lifetime] = {**m.global_client, **m.global_server}
        expected = _sfl_v2_sgd_reference(cfg, data, per_batch=lifetime == "per_batch")
        assert set(expected) == set(got[lifetime])
        for k, v in expected.items():
            torch.testing.assert_close(got[lifetime][k], v, rtol=1e-5, atol=1e-6, msg=f"{lifetime} {k}")
    a, b = got["per_client"], got["per_batch"]
    assert all(not torch.allclose(a[k], b[k]) for k in m.global_server if k.endswith(".weight")), "no server momentum"


@pytest.mark.parametrize("split,minimal", [((1, 1), False), ((0, 0), False), ((0, 0), True)])
def test_sfprompt_split_training_equals_unsplit_backprop(split, minimal):
    """SFPrompt's own ``split_training`` (smashed data up, body output down, gradient up through the frozen
    body, gradient down into the prompts) updates prompts and tail exactly as one SGD step of the unsplit
    model on the same batch, also when only the rows the receiver uses are sent."""
    data = make_data(n=8, clients=1)
    cfg = make_cfg("sfprompt", **{"partition.num_clients": 1, "model.head_blocks": split[0],
                                  "model.tail_blocks": split[1], "method_params.keep_ratio": 1.0,
                                  "method_params.minimal_traffic": minimal})
    m = create_method(cfg, data)
    kept = data.client_indices[0]
    ref = copy.deepcopy(m.model)
    x, y = next(iter(m.batches(kept, 0, 0, 0)))
    trained = [k for k, p in ref.named_parameters() if p.requires_grad]
    before = {k: p.detach().clone() for k, p in m.model.named_parameters()}
    expected = _sgd_client(ref, [(x, y)], 0.05, trained)
    m.split_training(0, 0, kept)
    assert {k for k in trained if k.startswith("head.prompts.")}, "prompts are trained"
    for k, p in m.model.named_parameters():
        if k in expected:
            torch.testing.assert_close(p.detach(), expected[k], rtol=1e-5, atol=1e-7, msg=k)
            assert not torch.equal(p.detach(), before[k]), f"{k} did not move"
        else:
            assert torch.equal(p.detach(), before[k]), f"frozen {k} changed"


@pytest.mark.parametrize("split,minimal", [((1, 1), False), ((0, 0), True)])
def test_sfprompt_split_training_over_batches_and_epochs_equals_sgd_with_momentum(split, minimal):
    """``split_training`` over 2 epochs of 3 batches (8, 8, 4 samples) with momentum 0.9 and weight decay equals
    SGD of the unsplit model stepping once per batch on the same batches: one batch at momentum 0 cannot tell a
    step per batch from a step per epoch on accumulated gradients, or a per-epoch optimiser from one per phase."""
    data = make_data(n=20, clients=1)
    cfg = make_cfg("sfprompt", **{"partition.num_clients": 1, "model.head_blocks": split[0],
                                  "model.tail_blocks": split[1], "train.momentum": 0.9, "train.weight_decay": 0.05,
                                  "method_params.keep_ratio": 1.0, "method_params.split_epochs": 2,
                                  "method_params.minimal_traffic": minimal})
    m = create_method(cfg, data)
    kept = data.client_indices[0]
    ref = copy.deepcopy(m.model)
    batches = [b for epoch in range(2) for b in m.batches(kept, 0, 0, epoch)]
    assert [len(y) for _, y in batches] == [8, 8, 4, 8, 8, 4]
    trained = [k for k, p in ref.named_parameters() if p.requires_grad]
    expected = _sgd_client(ref, batches, 0.05, trained, momentum=0.9, weight_decay=0.05)
    loss = m.split_training(0, 0, kept)
    for k, p in m.model.named_parameters():
        if k in expected:
            torch.testing.assert_close(p.detach(), expected[k], rtol=1e-5, atol=1e-6, msg=k)
    assert m.compute.frame().query("party == 'client'").samples.tolist() == [40]
    assert np.isfinite(loss) and loss > 0


def test_sfprompt_local_loss_update_over_batches_and_epochs_equals_sgd_of_head_and_tail():
    """The local-loss update (head -> tail, body skipped) over 2 epochs of 3 batches with momentum 0.9 and weight
    decay equals SGD of ``client_path`` stepping once per batch on the batches of the ``local_loss`` stream; its
    loss is the sample-weighted mean of the batch losses."""
    data = make_data(n=20, clients=1)
    cfg = make_cfg("sfprompt", **{"partition.num_clients": 1, "train.momentum": 0.9, "train.weight_decay": 0.05})
    m = create_method(cfg, data)
    idx = data.client_indices[0]
    ref = copy.deepcopy(m.model)
    batches = [b for epoch in range(2) for b in m.batches(idx, 0, 0, epoch, stream="local_loss")]
    trained = [k for k, p in ref.named_parameters() if p.requires_grad]
    params = dict(ref.named_parameters())
    opt = torch.optim.SGD([params[k] for k in trained], lr=0.05, momentum=0.9, weight_decay=0.05)
    weighted = 0.0
    for x, y in batches:
        loss = F.cross_entropy(ref.client_path(x), y)
        weighted += float(loss.detach()) * len(y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    got, scores = m.local_loss_update(0, 0, idx, 2)
    assert scores is None and got == pytest.approx(weighted / 40, rel=1e-5)
    for k in trained:
        torch.testing.assert_close(dict(m.model.named_parameters())[k].detach(), params[k].detach(), rtol=1e-5,
                                   atol=1e-6, msg=k)


@pytest.mark.parametrize("prompt_len", [3, 1])
def test_minimal_traffic_sends_fewer_bytes_and_changes_nothing(prompt_len):
    """Also with one prompt, as many rows as the CLS prefix: the body output still sends the CLS row (not the
    prompt's) and the gradient down the prompt's row."""
    data = make_data(n=24, clients=2)
    over = {"model.head_blocks": 0, "model.tail_blocks": 0, "train.rounds": 2, "model.prompt_len": prompt_len}
    with pytest.warns(UserWarning, match="degenerate"):
        naive = create_method(make_cfg("sfprompt", **over), data)
        minimal = create_method(make_cfg("sfprompt", **over, **{"method_params.minimal_traffic": True}), data)
    naive.run()
    minimal.run()
    for k, v in naive.global_client.items():
        torch.testing.assert_close(minimal.global_client[k], v, rtol=1e-5, atol=1e-7, msg=k)
    a, b = naive.comm.frame(), minimal.comm.frame()
    by = lambda f, kind, d: f[(f.kind == kind) & (f.direction == d)].numel.sum()  # noqa: E731
    tokens, prefix, prompts = 16 + 1 + prompt_len, 1, prompt_len
    assert by(b, "body_out", "down") * tokens == by(a, "body_out", "down") * prefix
    assert by(b, "grad", "up") * tokens == by(a, "grad", "up") * prefix
    assert by(b, "grad", "down") * tokens == by(a, "grad", "down") * prompts
    assert by(b, "smashed", "up") == by(a, "smashed", "up")


# ----------------------------------------------------------------------------------------------------------
# frozen parameters and which parameters train


@pytest.mark.parametrize("method", ALL)
def test_every_frozen_tensor_is_bit_identical_and_every_trained_one_moves(method):
    data = make_data()
    m = create_method(make_cfg(method, **{"train.rounds": 2}), data)
    frozen = {k: p.detach().clone() for k, p in m.model.named_parameters() if not p.requires_grad}
    buffers = {k: b.clone() for k, b in m.model.named_buffers()}
    trained = {**m.global_client, **m.global_server}
    trained = {k: v.clone() for k, v in trained.items()}
    m.run()
    m._load(m.global_client)
    m._load(m.global_server)
    for k, p in m.model.named_parameters():
        if k in frozen:
            assert torch.equal(p, frozen[k]), f"frozen {k} changed"
        else:
            assert not torch.equal(p, trained[k]), f"trainable {k} did not move"
    for k, b in m.model.named_buffers():
        assert torch.equal(b, buffers[k]), k
    losses = m.metrics_frame().query("split == 'train' and metric == 'loss'").value
    assert len(losses) == 4 and all(isinstance(v, float) and 0 < v < 10 for v in losses)  # 2 clients x 2 rounds
    assert set(trained) == {k for k, p in m.model.named_parameters() if p.requires_grad}


# ----------------------------------------------------------------------------------------------------------
# accounting: analytic == ledgers == an independent count


def _readings():
    cls = method_class("sfprompt")
    return [("sfprompt", r, {f"method_params.{k}": v for k, v in over.items()}) for r, over in cls.readings().items()]


CASES = [(m, "default", {}) for m in ALL] + _readings() + [
    ("sfprompt", "warmup+minimal", {"method_params.el2n_warmup_epochs": 1, "method_params.minimal_traffic": True,
                                    "model.head_blocks": 0, "model.tail_blocks": 0})]


@pytest.mark.parametrize("method,reading,over", CASES, ids=[f"{m}-{r}" for m, r, _ in CASES])
def test_analytic_accounting_matches_a_real_run(method, reading, over):
    """The accounting verb's per-client numbers equal the ledgers of a real run exactly, every round (a
    client's first round has its one-off work, e.g. EL2N scoring when ``el2n_every_round`` is off)."""
    data = make_data(n=50, clients=2)  # 25 samples each: partial last batches
    cfg = make_cfg(method, **{"train.local_epochs": 2, "train.rounds": 3, **over,
                              **({"method_params.keep_ratio": 0.3, "method_params.split_epochs": 2}
                                 if method == "sfprompt" else {})})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = create_method(cfg, data)
    m.run()
    comm, flops = m.comm.frame(), m.compute.frame()
    cls = method_class(method)
    model = cls.prepare_model(cfg, data.num_classes)
    for rnd in range(3):
        for c, idx in enumerate(data.client_indices):
            exp_comm, exp_flops = method_round(cls, model, cfg, len(idx), first=rnd == 0)
            got = comm[(comm["round"] == rnd) & (comm.client == c)].drop(columns=["round", "client"])
            key = ["phase", "direction", "kind"]
            got = got.sort_values(key).reset_index(drop=True)
            exp = exp_comm.sort_values(key).reset_index(drop=True)
            assert got[key + ["dtype"]].astype(str).equals(exp[key + ["dtype"]].astype(str))
            for col in ("numel", "bytes", "messages"):
                assert got[col].tolist() == exp[col].tolist(), (rnd, col)
            gotf = flops[(flops["round"] == rnd) & (flops.client == c)].drop(columns=["round", "client"])
            expf = exp_flops[exp_flops.samples > 0]
            gotf = gotf.sort_values(["phase", "party"]).reset_index(drop=True)
            expf = expf.sort_values(["phase", "party"]).reset_index(drop=True)
            for col in ("phase", "party", "samples", "forward", "backward_activation", "backward_weight", "total"):
                assert gotf[col].tolist() == expf[col].tolist(), (rnd, col)


PHASES = {"sfprompt": ("score", "local_loss_update", "split_training"), "fedavg": ("local_update",),
          "sfl_v2": ("local_update",), "fedprompt": ("local_update",)}


@pytest.mark.parametrize("method,over", [
    ("sfprompt", {"method_params.el2n_every_round": False}),
    ("sfprompt", {"method_params.el2n_timing": "before_local_loss", "method_params.local_loss_samples": "kept"}),
    ("sfprompt", {"method_params.el2n_timing": "local_loss_pass"}),
    ("fedavg", {}), ("fedprompt", {}), ("sfl_v2", {})])
def test_ledger_flops_equal_flop_counter_mode_around_the_phases_that_ran(method, over):
    """An independent count: ``torch.utils.flop_counter.FlopCounterMode`` around every phase a real run
    executes, over 3 rounds (with ``el2n_every_round`` off, rounds 1-2 score nothing), against the compute
    ledger per round, client and phase. FlopCounterMode counts 2 FLOPs per multiply-add and no norm layers,
    so ours (fvcore: 1 per multiply-add, norms included) is at most ~3% above half of its count."""
    from torch.utils.flop_counter import FlopCounterMode

    data = make_data(n=40, clients=2)
    cfg = make_cfg(method, **{"train.rounds": 3, "method_params.keep_ratio": 0.5, **over} if method == "sfprompt"
                   else {"train.rounds": 3})
    m = create_method(cfg, data)
    counted: dict[tuple, int] = {}
    phase_of = {"score": "el2n", "local_loss_update": "local_loss", "split_training": "split",
                "local_update": m.phase if hasattr(m, "phase") else "local"}
    for name in PHASES[method]:
        original = getattr(m, name)

        def wrapped(rnd, client, *args, _f=original, _name=name, **kwargs):
            with unfused_attention(m.model), FlopCounterMode(display=False) as counter:
                out = _f(rnd, client, *args, **kwargs)
            key = (rnd, client, phase_of[_name])
            counted[key] = counted.get(key, 0) + int(counter.get_total_flops()) // 2
            return out

        setattr(m, name, wrapped)
    m.run()
    ledger = m.compute.frame().groupby(["round", "client", "phase"]).total.sum()
    assert set(ledger.index) == {k for k, v in counted.items() if v > 0}
    for key, theirs in counted.items():
        ours = int(ledger.get(key, 0))
        assert theirs <= ours <= 1.03 * theirs, (key, ours, theirs)
    if over.get("method_params.el2n_every_round") is False:
        assert [k for k in ledger.index if k[2] == "el2n"] == [(0, 0, "el2n"), (0, 1, "el2n")]


def test_accounting_table_sums_each_method_round_per_reading_relative_to_fedavg():
    """The accounting verb's table: one row per federated method and distinct reading (SFPrompt's ``paper``
    reading is its default, listed once); each row sums :func:`method_round` (equal to a real run's ledgers,
    above) per party and direction, percentages are of FedAvg's default row, and at the break-even sample count
    the method sends what FedAvg sends (NaN where its traffic does not grow with the data)."""
    small = {"model.depth": 2, "model.tail_blocks": 0}  # 1 + 1 + 0 blocks: FLOP counting is the cost here
    cfg = make_cfg("sfprompt", **small)
    table = accounting_table(cfg, samples_per_client=20, num_classes=3)
    readings = [r for r in method_class("sfprompt").readings() if r != "paper"]
    assert MINIMAL_READING in readings  # the resource table looks its minimal-traffic row up by this name
    assert list(zip(table.method, table.reading)) == [(m, "default") for m in federated_methods()] + [
        ("sfprompt", r) for r in readings]
    fed = table.iloc[0]
    fed_bytes = 1e6 * fed.comm_mb_total
    checked = table[(table.reading == "default") | table.reading.isin(["score_once", "paper_minimal_traffic"])]
    for row in checked.itertuples():
        cls = method_class(row.method)
        over = {} if row.reading == "default" else cls.readings()[row.reading]
        run_cfg = make_cfg(row.method, **small, **{f"method_params.{k}": v for k, v in over.items()})
        model = cls.prepare_model(run_cfg, 3)
        comm, comp = method_round(cls, model, run_cfg, 20)
        first = method_round(cls, model, run_cfg, 20, first=True)[1]
        client = comp[comp.party == "client"]
        assert (row.backbone, row.samples_per_client) == ("vit_tiny_patch16_224", 20)
        changed = sorted((k, v) for k, v in over.items() if v != getattr(cls.Params(), k))
        assert row.reading_params == (", ".join(f"{k}={v}" for k, v in changed) or "paper defaults")
        assert row.client_params_stored == cls.client_stored(model)
        assert row.client_params_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad) - sum(
            p.numel() for k, p in model.named_parameters() if cls.is_server_param(k))
        assert row.client_gflops_round == pytest.approx(client.total.sum() / 1e9, rel=1e-12)
        assert row.client_gflops_first_round == pytest.approx(first[first.party == "client"].total.sum() / 1e9,
                                                              rel=1e-12)
        assert row.server_gflops_round == pytest.approx(comp[comp.party == "server"].total.sum() / 1e9, rel=1e-12)
        for phase, sub in client.groupby("phase"):
            assert getattr(row, f"client_gflops_{phase}") == pytest.approx(sub.total.sum() / 1e9, rel=1e-12)
        up, down = (comm[comm.direction == d].bytes.sum() / 1e6 for d in ("up", "down"))
        assert (row.comm_mb_up, row.comm_mb_down, row.comm_mb_total) == pytest.approx((up, down, up + down))
        assert row.client_flops_pct_of_fedavg == pytest.approx(100 * row.client_gflops_round / fed.client_gflops_round)
        assert row.client_flops_first_round_pct_of_fedavg == pytest.approx(
            100 * row.client_gflops_first_round / fed.client_gflops_round)
        assert row.comm_pct_of_fedavg == pytest.approx(100 * row.comm_mb_total / fed.comm_mb_total)
        sent = lambda n: comm_rows(cls.expected_transfers(model, run_cfg, n)).bytes.sum()  # noqa: E731
        if row.method in ("fedavg", "fedprompt"):
            assert np.isnan(row.break_even_samples)
        else:  # bytes grow linearly with the samples (up to rounding of the kept count): FedAvg's at break-even
            n = int(row.break_even_samples)
            assert sent(max(n - 8, 0)) < fed_bytes < sent(n + 8), (row.method, row.reading)
    own = accounting_table(make_cfg("sfprompt", **small, **{"method_params.keep_ratio": 0.3}), samples_per_client=20,
                           num_classes=3, methods=["sfprompt"])
    assert own.reading_params.iloc[0] == "keep_ratio=0.3" and "comm_pct_of_fedavg" not in own  # no FedAvg row
    deep = make_cfg("sfprompt", **{"model.depth": 3, "model.head_blocks": 2, "model.tail_blocks": 0,
                                   "model.prompt_depth": "client"})  # a prompt set per client block: 2
    other = accounting_table(deep, samples_per_client=20, num_classes=3, methods=["sfprompt"],
                             method_params={"sfprompt": {"keep_ratio": 0.5, "split_epochs": 2}})
    assert other.reading_params.iloc[0] == "split_epochs=2"  # keep_ratio 0.5 is the default
    model = method_class("sfprompt").prepare_model(deep, 3)
    assert other.client_params_trainable.iloc[0] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert other.client_params_trainable.iloc[0] > table[table.method == "sfprompt"].client_params_trainable.iloc[0]


def test_format_table_prints_the_default_reading_with_its_setting():
    """The accounting verb's text: a line naming backbone, samples and conventions, then the default reading of
    each method in the listed columns (4 significant digits), nothing else."""
    cols = ["method", "client_params_trainable", "client_gflops_round", "comm_mb_up", "comm_mb_down",
            "client_flops_pct_of_fedavg", "comm_pct_of_fedavg", "break_even_samples"]
    table = pd.DataFrame([["fedavg", "default", 86000000, 123.456789, 343.0, 343.0, 100.0, 100.0, np.nan, 7],
                          ["sfprompt", "score_once", 1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 7],
                          ["sfprompt", "default", 20000, 2.0, 0.5, 0.25, 1.5, 0.1, 480.0, 7]],
                         columns=["method", "reading"] + cols[1:] + ["unlisted"]).assign(backbone="vit_x",
                                                                                         samples_per_client=500)
    head, header, _, *rows = format_table(table).splitlines()
    assert head == f"vit_x, 500 samples per client, per client per round; FLOPs: {FLOP_CONVENTION}; MB = 1e6 bytes"
    assert header.split() == cols
    assert [r.split() for r in rows] == [["fedavg", "86000000", "123.5", "343", "343", "100", "100", "nan"],
                                         ["sfprompt", "20000", "2", "0.5", "0.25", "1.5", "0.1", "480"]]
    assert len(format_table(table.drop(columns="reading")).splitlines()) == 3 + 3  # no readings: every row
    assert format_table(table.iloc[[0]]).splitlines()[0] == head  # one method alone


def test_bytes_are_numel_times_element_size_for_sfprompt():
    data = make_data(n=20, clients=1)
    cfg = make_cfg("sfprompt", **{"partition.num_clients": 1, "method_params.keep_ratio": 0.5, "train.batch_size": 4})
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


# ----------------------------------------------------------------------------------------------------------
# SFPrompt's self-update: pruning and the order of its phases


def test_kept_count_and_top_scored_by_hand():
    """``ceil(γ n)`` kept, at least one for a non-empty client (0.3 × 10 is 3.0000000000000004 in floating point:
    still 3); the highest scores kept, ties in index order (42 scores: numpy's default sort is not stable there)."""
    from benchmark.sfprompt import kept_count, top_scored

    assert [kept_count(n, g) for n, g in ((0, 0.5), (1, 0.5), (1, 0.01), (10, 0.3), (10, 0.25), (7, 1.0))] == [
        0, 1, 1, 3, 3, 7]
    score = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 2.0] * 7)
    kept = top_scored(np.arange(100, 142), score, 10)
    assert kept.tolist() == [100, 102, 104] + list(range(105, 142, 6))


def test_el2n_equals_a_hand_computed_value():
    """EL2N = ||softmax(z) - onehot(y)||_2 on logits whose softmax is known by hand: uniform over 3 classes
    (error (1/3, 1/3, -2/3), norm sqrt(6)/3) and (1/2, 1/4, 1/4) from z = (ln 2, 0, 0), right (error
    (-1/2, 1/4, 1/4), sqrt(6)/4) or wrong (error (1/2, -3/4, 1/4), sqrt(14)/4). Without the one-hot term the
    right and the wrong sample would score the same."""
    from benchmark.sfprompt import el2n_scores

    ln2 = float(np.log(2))
    logits = torch.tensor([[0.0, 0.0, 0.0], [ln2, 0.0, 0.0], [ln2, 0.0, 0.0]], requires_grad=True)
    got = el2n_scores(logits, torch.tensor([2, 0, 1]))
    expected = torch.tensor([6 ** 0.5 / 3, 6 ** 0.5 / 4, 14 ** 0.5 / 4])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert not got.requires_grad and logits.grad is None
    torch.testing.assert_close(logits.detach()[1], torch.tensor([ln2, 0.0, 0.0]))  # the input is left alone


def test_sfprompt_keeps_the_hardest_samples():
    """``score`` is EL2N under head -> tail in eval mode and ``keep`` keeps the highest: checked against the
    one-hot formula written out here (not against ``el2n_scores``), and the kept set is the top 5 of it."""
    data = make_data(n=20, clients=1)
    m = create_method(make_cfg("sfprompt", **{"partition.num_clients": 1, "method_params.keep_ratio": 0.25,
                                              "train.eval_batch_size": 6}), data)  # 4 scoring batches
    score = m.score(0, 0)
    assert m.model.training  # scoring leaves the model in training mode
    kept = m.keep(0, score)
    assert len(kept) == 5
    with torch.no_grad():
        m.model.eval()
        x = data.prepare(data.train_images, m.device)
        probs = m.model.client_path(x).softmax(-1)
    scores = (probs - F.one_hot(data.train_labels, data.num_classes)).norm(dim=-1).numpy()
    np.testing.assert_allclose(score, scores, rtol=1e-5)
    assert kept.tolist() == np.sort(np.argsort(-scores, kind="stable")[:5]).tolist()
    assert scores[kept].min() >= np.delete(scores, kept).max()


def _first_round(over: dict) -> tuple[list[str], dict]:
    """(phases charged in order, extra metrics) of one client's first round."""
    data = make_data(n=16, clients=1)
    m = create_method(make_cfg("sfprompt", **{"partition.num_clients": 1, **over}), data)
    order = []
    m.record_compute = lambda rnd, client, phase, samples, _o=m.record_compute: (order.append(phase),
                                                                                  _o(rnd, client, phase, samples))
    upd = m.local_update(0, 0)
    return order, {**upd.extra, "samples": upd.samples}


def test_sfprompt_phase_order_follows_the_knobs():
    assert _first_round({})[0] == ["local_loss", "el2n", "split"]  # the paper's (a) then (b)
    assert _first_round({"method_params.el2n_timing": "before_local_loss"})[0] == ["el2n", "local_loss", "split"]
    assert _first_round({"method_params.el2n_timing": "local_loss_pass"})[0] == ["local_loss", "split"]
    assert _first_round({"method_params.el2n_warmup_epochs": 1})[0] == ["local_loss", "local_loss", "el2n", "split"]


def test_sfprompt_local_loss_sees_all_samples_or_only_the_kept_ones():
    data = make_data(n=16, clients=1)
    for samples, expected in (("all", 16), ("kept", 4)):
        m = create_method(make_cfg("sfprompt", **{"partition.num_clients": 1, "method_params.keep_ratio": 0.25,
                                                  "method_params.el2n_timing": "before_local_loss",
                                                  "method_params.local_loss_samples": samples}), data)
        m.run()
        flops = m.compute.frame().query("party == 'client'").set_index("phase")
        assert flops.loc["local_loss", "samples"] == expected and flops.loc["split", "samples"] == 4


def test_scores_from_the_local_loss_pass_are_the_last_epoch_logits():
    """``local_loss_pass`` keeps the samples whose last-epoch training logits had the highest EL2N."""
    from benchmark.sfprompt import el2n_scores

    data = make_data(n=16, clients=1)
    m = create_method(make_cfg("sfprompt", **{"partition.num_clients": 1, "method_params.keep_ratio": 0.25,
                                              "method_params.el2n_timing": "local_loss_pass",
                                              "train.batch_size": 16}), data)
    probe = copy.deepcopy(m.model)
    x, y, b = next(iter(m.batches(data.client_indices[0], 0, 0, 0, stream="local_loss", with_index=True)))
    with torch.no_grad():
        scores = el2n_scores(probe.client_path(x), y).numpy()  # one batch: the logits before the only step
    kept, _ = m.self_update(0, 0)
    expected = np.sort(b.numpy()[np.argsort(-scores, kind="stable")[:4]])
    assert kept.tolist() == expected.tolist()


def test_ablation_settings_change_what_runs():
    data = make_data(n=16, clients=1)
    base = {"partition.num_clients": 1}
    no_local = create_method(make_cfg("sfprompt", **base, **{"method_params.local_loss_epochs": 0}), data)
    no_local.run()
    assert "local_loss" not in set(no_local.compute.frame().phase)
    no_grad = create_method(make_cfg("sfprompt", **base, **{"method_params.prompt_grad_via_server": False}), data)
    no_grad.run()
    assert "grad" not in set(no_grad.comm.frame().kind)
    no_prompt = create_method(make_cfg("sfprompt", **base, **{"model.prompt_len": 0}), data)
    assert no_prompt.model.head.prompts is None
    no_prune = create_method(make_cfg("sfprompt", **base, **{"method_params.keep_ratio": 1.0}), data)
    no_prune.run()
    assert no_prune.metrics_frame().query("metric == 'kept'").value.iloc[0] == 16


def test_a_run_resumed_from_its_state_dict_equals_an_uninterrupted_one():
    """The state after round 0, loaded into a fresh method, runs on to the uninterrupted run's parameters, ledgers
    and metrics; with ``el2n_every_round`` off the kept sets travel with it (else round 1 would score again)."""
    data = make_data(n=24, clients=2)
    cfg = make_cfg("sfprompt", **{"train.rounds": 2, "method_params.el2n_every_round": False})
    full = create_method(cfg, data)
    full.run()
    first = create_method(cfg, data)
    first.run_round(0)
    resumed = create_method(cfg, data)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert resumed.next_round == 1 and sorted(resumed._kept) == [0, 1]
    resumed.run()
    for k, v in {**full.global_client, **full.global_server}.items():
        assert torch.equal({**resumed.global_client, **resumed.global_server}[k], v), k
    assert resumed.comm.frame().equals(full.comm.frame()) and resumed.compute.frame().equals(full.compute.frame())
    assert resumed.metrics_frame().equals(full.metrics_frame())
    assert "el2n" not in set(resumed.compute.frame().query("round == 1").phase)
    resumed.load_extra_state({})  # a state without kept sets (nothing scored yet) loads as none
    assert resumed._kept == {}


def test_weighted_average_needs_a_client_and_positive_weights():
    from benchmark.errors import BenchmarkError
    from benchmark.federation.aggregation import WeightedAverage

    with pytest.raises(BenchmarkError, match="no client state to aggregate this round"):
        WeightedAverage().result()
    avg = WeightedAverage()
    with pytest.raises(BenchmarkError, match="aggregation weight must be > 0, got 0"):
        avg.add({"w": torch.ones(2)}, 0)
    avg.add({"w": torch.ones(2)}, 1.0)
    avg.add({"w": torch.full((2,), 4.0)}, 3.0)
    assert avg.count == 2 and torch.equal(avg.result()["w"], torch.full((2,), 3.25))


def test_batches_are_a_seeded_shuffle_per_epoch():
    """Every epoch visits each sample once, in its own seeded order (not the stored order), the same on a replay."""
    m = create_method(make_cfg("fedavg"), make_data(n=48))
    idx = m.data.client_indices[0]
    order = lambda epoch: np.concatenate([b.numpy() for *_, b in m.batches(idx, 0, 0, epoch, with_index=True)])  # noqa: E731
    first, second = order(0), order(1)
    assert sorted(first) == sorted(second) == sorted(idx.tolist())
    assert first.tolist() != idx.tolist() and first.tolist() != second.tolist()
    assert order(0).tolist() == first.tolist()


def test_evaluation_every_k_rounds_and_at_the_last():
    data = make_data(n=24)
    m = create_method(make_cfg("fedavg", **{"train.rounds": 4, "train.eval_every": 3}), data)
    m.run()
    evaluated = m.metrics_frame().query("split == 'test' and metric == 'accuracy'")["round"].tolist()
    assert evaluated == [2, 3]  # after the third round, and the last


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
    m.model.tail._vit.global_pool = "avg"  # average pooling reads every token: the local-loss path is not blind
    assert list(m.check_settings()) == []


def test_partial_participation_samples_seeded_subsets():
    data = make_data(n=40, clients=4)
    m = create_method(make_cfg("fedavg", **{"partition.num_clients": 4, "train.participation": 0.5}), data)
    picks = [m.sample_clients(r) for r in range(6)]
    assert all(len(p) == 2 for p in picks)
    assert len({tuple(p) for p in picks}) > 1
    assert picks == [m.sample_clients(r) for r in range(6)]


def test_interim_evaluations_score_a_fixed_subsample_and_never_change_training():
    """``train.interim_eval_samples``: rounds before the last score a stratified subsample of that size (the
    same images in every run), the final round the whole split; training is untouched (same final metrics as
    a run evaluated on the whole split every round), and the hash is unchanged while the knob is None."""
    from benchmark.data.sampling import stratified_subsample

    data = make_data(n=48)
    over = {"train.rounds": 3, "train.eval_every": 1}
    full = create_method(make_cfg("sfprompt", **over), data, "cpu")
    full.run()
    sub = create_method(make_cfg("sfprompt", **over, **{"train.interim_eval_samples": 5}), data, "cpu")
    sub.run()
    fm, sm = full.metrics_frame(), sub.metrics_frame()
    test = lambda m, metric: m[(m.split == "test") & (m.client == -1) & (m.metric == metric)].set_index("round").value
    assert test(sm, "samples").tolist() == [5.0, 5.0, 12.0]
    assert test(fm, "samples").tolist() == [12.0, 12.0, 12.0]
    # training is the same: the final round's evaluation and every non-evaluation row agree exactly
    assert test(sm, "accuracy")[2] == test(fm, "accuracy")[2]
    rest = lambda m: m[m.split != "test"].reset_index(drop=True)
    assert rest(sm).equals(rest(fm))
    # the interim point is the accuracy on exactly those 5 images
    idx = stratified_subsample(data.test_labels.numpy(), 5, seed=0)
    probe = create_method(make_cfg("sfprompt", **over), data, "cpu")
    for rnd in range(2):
        probe.run_round(rnd)
        probe._load(probe.global_client), probe._load(probe.global_server)
        assert probe.accuracy(idx, "test")[0] == test(sm, "accuracy")[rnd]
    assert make_cfg("sfprompt").hash() == make_cfg("sfprompt", **{"train.interim_eval_samples": None}).hash()
    assert make_cfg("sfprompt").hash() != make_cfg("sfprompt", **{"train.interim_eval_samples": 5}).hash()


def test_client_eval_off_drops_only_the_client_train_rows():
    """``train.client_eval: false`` skips the final per-client scoring on each client's own training data and
    nothing else: every other metrics row is identical; the hash is unchanged while the knob is True."""
    data = make_data(n=48)
    on = create_method(make_cfg("fedavg", **{"train.rounds": 2}), data, "cpu")
    on.run()
    off = create_method(make_cfg("fedavg", **{"train.rounds": 2, "train.client_eval": False}), data, "cpu")
    off.run()
    mon, moff = on.metrics_frame(), off.metrics_frame()
    clients = mon[mon.split == "client_train"]
    assert len(clients) == len(data.client_indices) and clients.value.between(0, 1).all()
    assert not (moff.split == "client_train").any()
    assert mon[mon.split != "client_train"].reset_index(drop=True).equals(moff)
    assert make_cfg("fedavg").hash() == make_cfg("fedavg", **{"train.client_eval": True}).hash()
    assert make_cfg("fedavg").hash() != make_cfg("fedavg", **{"train.client_eval": False}).hash()
