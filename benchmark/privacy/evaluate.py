"""The privacy job: reconstruct clients' images from the smashed data the server receives, for every method,
attack, noise level and round of one split point, and score them.

``python -m benchmark privacy --spec JSON --out DIR/NAME`` (the workflow's ``privacy`` rule, one job per
split point) writes ``NAME.csv`` (one row per image × method × round × server × attack × σ: PSNR in dB and SSIM on
[0, 1] pixels, the attack's wall seconds, and the method's client FLOPs share of FedAvg at this split) and
``NAME.npz`` (a few originals and their reconstructions as uint8, for the reconstruction grid figure).

What the server sees at a round is the client head's output under the client state of that round. The job
computes it itself:

* ``first``: the state broadcast in round 0, i.e. the backbone's weights with the run seed's initial prompts
  (rebuilt exactly as the run builds it);
* ``final``: the aggregated client state after the last round, read from the run's ``head_state.safetensors``
  (written by :func:`benchmark.run.train`). Only where the grid has a run of this method at this split;
  otherwise the table says "no run". At a σ > 0 for which the grid trained the method with that noise
  (``noise_runs``: ``method_params.smashed_noise_sigma``, the workflow's ``privacy.noise_training``), the server's
  view is that run's own state: what a server facing the defence really sees (same round-0 state, the final
  state of the noisy training); elsewhere the noise is added to the σ = 0 run's smashed data.

Which server attacks (``server``, :data:`SERVERS`): ``all`` knows the head the client used. SplitFed separates
the main server (it receives the smashed data) from the fed server (it averages the client parts), so at the
final round SFL-V1/V2 also get ``main`` rows: the final round's smashed data attacked with the head as broadcast
in round 0 (the pre-trained weights), i.e. the main server not colluding with the fed server. Departure from
FORA (Xu et al. 2024): no surrogate head is trained on the auxiliary data; the main server uses the public
pre-trained head as its estimate of the client map.

Victims are ``images`` of the clients' training images (the run's training subsample); the auxiliary data
are up to ``aux_samples`` test images, which no client holds. Costs: client FLOPs per round from the methods'
own accounting hooks (:func:`benchmark.analytic.accounting_table`), fvcore convention.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from benchmark import seeding
from benchmark.analytic import accounting_table
from benchmark.config import RunConfig, from_dict
from benchmark.data.cache import load_image_data
from benchmark.errors import ConfigError
from benchmark.io import atomic_path, write_csv
from benchmark.methods import method_class
from benchmark.models.vit import input_spec
from benchmark.overrides import unflatten
from benchmark.privacy.attacks import (ATTACKS, AttackNotApplicable, AttackSettings, ServerKnowledge, add_noise,
                                       patch_tokens)
from benchmark.privacy.defence import DefenceSearch, search_sigma
from benchmark.privacy.metrics import per_image
from benchmark.run import resolve_device
from benchmark.study import BASELINE

ROUNDS = ("first", "final")
SERVERS = {"all": "knows every part it or a colluding fed server aggregates (SplitFed: main and fed server "
                  "collude; SFPrompt: its one server)",
           "main": "SplitFed's main server alone: knows the client part only as broadcast in round 0 (the "
                   "pre-trained head), not the fed server's trained average"}
"""The server whose knowledge an attack uses (the ``server`` column). ``main`` rows exist for the final round of
methods with :attr:`~benchmark.federation.method.Method.separate_fed_server`; at round 0 the two coincide."""
EXAMPLES = 4
"""Images per case kept (uint8) for the reconstruction grid figure."""
COLUMNS = ["backbone", "dataset", "head_blocks", "tail_blocks", "method", "round", "server", "run", "attack", "sigma",
           "image", "psnr", "ssim", "seconds", "smashed_rms", "client_flops_pct_of_fedavg", "note"]


@dataclass(frozen=True)
class Case:
    """One method at this split: its RunConfig and, when the grid has such a run, the run folder."""

    method: str
    config: RunConfig
    run_dir: str | None
    noise_runs: dict[str, str] = field(default_factory=dict)
    """σ (``f"{σ:g}"``) -> folder of the run trained with that noise (same settings otherwise)."""


def load_spec(spec: dict[str, Any]) -> tuple[list[Case], dict[str, Any]]:
    """The cases and the privacy settings of a spec written by
    :meth:`benchmark.workflow.privacy.PrivacySection.privacy_spec`."""
    cases = [Case(c["method"], from_dict(unflatten(c["settings"])), c.get("run_dir"), dict(c.get("noise_runs", {})))
             for c in spec["cases"]]
    if not cases:
        raise ConfigError("privacy spec has no cases (privacy.methods is empty?)")
    for name in [*spec["attacks"], *spec.get("defence", {}).get("attacks", [])]:
        ATTACKS.get(name)
    return cases, spec


def to_unit(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[B, 3, h, w]`` -> float [0, 1] at ``size`` px (bilinear, antialias, as the runs resize)."""
    x = images.float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return x


def _images(cfg: RunConfig, n: int, aux: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(victims: n client training images, auxiliary: up to ``aux`` test images, number of classes)."""
    size, _, _ = input_spec(cfg.model)
    train, test = load_image_data(cfg.data, size, cfg.seed)
    pick = seeding.rng(cfg.seed, "privacy", "victims").permutation(len(train))[:n]
    victims = to_unit(train.images[torch.as_tensor(np.sort(pick))], size)
    aux_idx = seeding.rng(cfg.seed, "privacy", "aux").permutation(len(test))[:aux]
    return victims, to_unit(test.images[torch.as_tensor(np.sort(aux_idx))], size), len(train.classes)


def _model(case: Case, num_classes: int, round_: str, device: torch.device, run_dir: str | None = None):
    """The split model with the head in the state the server knows at ``round_`` (of ``run_dir``, default the
    case's run); None if unavailable."""
    run_dir = run_dir or case.run_dir
    if round_ == "final" and run_dir is None:
        return None
    model = method_class(case.config.train.method).build_model(case.config, num_classes).eval()  # name or reference
    if round_ == "final":
        from safetensors.torch import load_file  # deferred: safetensors.torch imports torch

        path = Path(run_dir) / "head_state.safetensors"
        if not path.is_file():
            raise ConfigError(f"run {run_dir!r} has no head_state.safetensors (rerun it with this version)")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in load_file(str(path)).items():
                params[k].copy_(v)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


def _servers(case: Case, num_classes: int, round_: str, device: torch.device) -> dict[str, tuple | None]:
    """:data:`SERVERS` attacking this case at ``round_``: ``all`` (None: it knows the head the client used) and,
    for a method with a separate fed server at the final round, ``main`` with (the round-0 model, its digest)."""
    if round_ != "final" or not method_class(case.method).separate_fed_server:
        return {"all": None}
    first = _model(case, num_classes, "first", device)
    return {"all": None, "main": (first, _head_digest(first))}


def _head_digest(model) -> str:
    h = hashlib.sha256(str(model.prompt_len).encode())
    for k, v in sorted(model.head.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _client_share(case: Case, samples: int, num_classes: int) -> float:
    """The method's client FLOPs per round as % of the baseline's (FedAvg) at this split (analytic accounting)."""
    table = accounting_table(case.config, samples_per_client=samples, num_classes=num_classes,
                             methods=list(dict.fromkeys([BASELINE, case.method])))
    table = table[table.reading == "default"]  # the configured reading (the others are the claims' range)
    return float(table.set_index("method").loc[case.method, "client_flops_pct_of_fedavg"])


def evaluate(spec: dict[str, Any], log=print) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Run every (method, round, σ, attack) of the spec; return the per-image frame and the example arrays."""
    cases, spec = load_spec(spec)
    settings = AttackSettings(**spec.get("attack_settings", {}))
    search = DefenceSearch(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("defence", {}).items()})
    head, tail = spec["split"]
    device = resolve_device(cases[0].config.device)
    victims, aux, num_classes = _images(cases[0].config, spec["images"], spec["aux_samples"])
    victims, aux = victims.to(device), aux.to(device)
    mean, std = _norm(cases[0].config)
    rows: list[dict[str, Any]] = []
    examples: dict[str, np.ndarray] = {"originals": _u8(victims[:EXAMPLES])}
    done: dict[tuple, list[dict[str, Any]]] = {}
    for case in cases:
        share = _client_share(case, spec["samples_per_client"], num_classes)
        base = {"backbone": spec["backbone"], "dataset": case.config.data.dataset, "head_blocks": head,
                "tail_blocks": tail, "method": case.method, "client_flops_pct_of_fedavg": share}
        for round_ in spec["rounds"]:
            model = _model(case, num_classes, round_, device)
            run = spec["run_labels"].get(case.run_dir) if case.run_dir else None
            if model is None:
                rows.append({**base, "round": round_, "server": "all", "run": None, "attack": None, "sigma": np.nan,
                             "image": -1, "psnr": np.nan, "ssim": np.nan, "seconds": np.nan,
                             "note": "no run of this method at this split in the grid"})
                continue
            views: dict[str | None, tuple] = {}
            servers = _servers(case, num_classes, round_, device)
            for si, sigma in enumerate(spec["noise_sigma"]):
                trained = case.noise_runs.get(f"{float(sigma):g}") if float(sigma) > 0 else None
                if trained not in views:  # the σ = 0 run's view, or the noise-trained run's own
                    view = model if trained is None else _model(case, num_classes, round_, device, trained)
                    with torch.no_grad():
                        sm = ServerKnowledge(view, mean, std, aux).head(victims)
                    # patch tokens' rms: the scale σ compares with
                    views[trained] = (view, sm, _head_digest(view), float(patch_tokens(sm, view).pow(2).mean().sqrt()))
                model_s, smashed, digest, rms = views[trained]
                run_s = spec["run_labels"].get(trained, trained) if trained else run
                gen = seeding.torch_generator(settings.seed, "privacy", "noise", si)
                received = add_noise(smashed, float(sigma), gen)
                for server, known in servers.items():
                    known = known or (model_s, digest)  # None: the head the client used
                    know = ServerKnowledge(known[0], mean, std, aux, float(sigma), settings)
                    for attack in spec["attacks"]:
                        key = (digest, known[1], float(sigma), attack)
                        tag = f"{case.method}|{round_}|{attack}|{float(sigma):g}" + ("" if server == "all" else f"|{server}")
                        if key not in done:
                            done[key] = _attack(attack, received, know, victims)
                            log(f"h{head}t{tail} {tag}: PSNR {np.nanmean([r['psnr'] for r in done[key]]):.2f} dB "
                                f"({done[key][0]['seconds']:.1f} s)")
                        for r in done[key]:
                            rows.append({**base, "round": round_, "server": server, "run": run_s, "attack": attack,
                                         "sigma": float(sigma), "smashed_rms": rms,
                                         **{k: v for k, v in r.items() if k != "images"}})
                        if done[key][0].get("images") is not None:
                            examples[tag] = done[key][0]["images"]
        if search.steps and case.method in (search.methods or [case.method]):
            rows += _defence_rows(case, num_classes, base, search, ServerKnowledge(None, mean, std, aux, 0.0, settings),
                                  victims, spec, log)
    return pd.DataFrame(rows, columns=COLUMNS), examples


def _defence_rows(case: Case, num_classes: int, base: dict[str, Any], search: DefenceSearch, know: ServerKnowledge,
                  victims: torch.Tensor, spec: dict[str, Any], log) -> list[dict[str, Any]]:
    """The defence σ of ``case`` (:func:`benchmark.privacy.defence.search_sigma`): at the final round where the grid
    has a run (else round 0), server ``all``, the noise added to the σ = 0 state's smashed data; the rows of the σ
    found (its attacks and the mean image), with a ``note`` starting "defence"."""
    round_ = "final" if case.run_dir else "first"
    model = _model(case, num_classes, round_, victims.device)
    with torch.no_grad():
        smashed = ServerKnowledge(model, know.mean, know.std, know.aux_images).head(victims)
    rms = float(patch_tokens(smashed, model).pow(2).mean().sqrt())
    results: dict[float, list[tuple[str, list[dict[str, Any]]]]] = {}

    def at(sigma: float, attacks) -> list[tuple[str, list[dict[str, Any]]]]:
        gen = seeding.torch_generator(know.settings.seed, "privacy", "defence", f"{sigma:.6g}")
        k = ServerKnowledge(model, know.mean, know.std, know.aux_images, sigma, know.settings)
        received = add_noise(smashed, sigma, gen)
        return [(a, _attack(a, received, k, victims)) for a in attacks]

    def score(sigma: float) -> float:
        results[sigma] = at(sigma, search.attacks)
        scores = [np.mean([r["psnr"] for r in res]) for _, res in results[sigma] if res[0]["image"] >= 0]
        return max(scores) if scores else math.nan

    baseline = float(np.mean([r["psnr"] for r in at(0.0, ["mean_image"])[0][1]]))
    target = baseline + search.margin_db
    sigma, trace = search_sigma(score, target, search.start * rms, search.ratio, search.steps)
    tried = ", ".join(f"{s:.3g}: {v:.1f} dB" for s, v in trace)
    note = (f"defence: smallest σ found with the best of {', '.join(search.attacks)} <= mean image + "
            f"{search.margin_db:g} dB ({target:.1f} dB); σ tried: {tried}")
    log(f"{case.method} {round_} {note}")
    out = {**base, "round": round_, "server": "all", "run": spec["run_labels"].get(case.run_dir) if case.run_dir else None,
           "smashed_rms": rms}
    if math.isnan(sigma):
        return [{**out, "attack": None, "sigma": np.nan, "image": -1, "psnr": np.nan, "ssim": np.nan,
                 "seconds": np.nan, "note": f"defence: no σ tried met the target; σ tried: {tried}"}]
    return [{**out, "attack": a, "sigma": sigma, **{k: v for k, v in r.items() if k != "images"}, "note": note}
            for a, res in results[sigma] + at(sigma, ["mean_image"]) for r in res]


def _norm(cfg: RunConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    _, mean, std = input_spec(cfg.model)
    return mean, std


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _attack(name: str, received: torch.Tensor, know: ServerKnowledge, victims: torch.Tensor) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    try:
        rec = ATTACKS.get(name)(received, know)
    except AttackNotApplicable as exc:
        return [{"image": -1, "psnr": np.nan, "ssim": np.nan, "seconds": 0.0, "note": str(exc), "images": None}]
    seconds = time.perf_counter() - t0
    scores = per_image(victims, rec)
    out = [{"image": i, "psnr": p, "ssim": s, "seconds": seconds, "note": ""} for i, (p, s) in enumerate(scores)]
    out[0]["images"] = _u8(rec[:EXAMPLES])
    return out


def write_outputs(frame: pd.DataFrame, examples: dict[str, np.ndarray], out: str | Path) -> list[Path]:
    """``{out}.csv`` and ``{out}.npz``, atomically."""
    out = Path(out)
    csv, npz = out.with_name(out.name + ".csv"), out.with_name(out.name + ".npz")
    npz.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k.replace("|", "__"): v for k, v in examples.items()})
    write_csv(csv, frame)
    return [csv, npz]
