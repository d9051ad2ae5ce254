"""The paper's headline claims beside ours, with the settings that produced ours (never tuned to match).

SFPrompt (Cao, Zhu, Gong, arXiv 2407.17533), as public summaries state it: SFPrompt reaches accuracy
competitive with federated full fine-tuning (FL = FedAvg) while using **0.46 % of its local computing** and
**53 % less communication** (≈0.47× FL's traffic on ViT-Base, ≈0.19× on ViT-Large). See shared/PAPER.md.

How we compare (pure functions, DataFrames in, a :class:`~benchmark.report.tables.Table` out):

* Client computation and traffic come from the analytic accounting (the methods' own cost hooks, tested
  against real runs) for every accounted backbone and split point, and from the runs' ledgers for the
  trained backbone. Both split settings are shown: head = tail = 0 blocks on the client (patch embedding,
  prompts and classifier only) and 1/1; the table says which one reproduces 0.46 %.
* With head = tail = 0 and token (CLS) pooling, the client path head -> tail classifies the input-layer CLS
  token, identical for every image: the local-loss update and the EL2N scores are degenerate. The table says
  so wherever that setting appears.
* SFPrompt's traffic grows linearly with the samples a client sends per round (activations dominate), so the
  traffic ratio is given at the runs' data size together with the break-even samples per client (where
  SFPrompt's traffic equals FL's).
* A number "reproduces" a claim when it lies within ``tolerance`` (relative) of the paper's.
* What the paper leaves open about SFPrompt's round (phase order, which samples the local loss sees, EL2N
  re-scoring, what is actually sent) changes the cost numbers. The accounting computes every *reading*
  (:meth:`benchmark.sfprompt.SFPrompt.readings`); each cost row gives the default reading's value, the range over
  all readings and each reading's value, and its verdict follows the range: ``reproduces`` when every reading
  does, ``reproduces under some readings`` (naming them) when some do, ``does not reproduce`` when none does.
* Accuracy ("competitive with FL") is SFPrompt − FedAvg per cell, paired by seed, with its 95% CI, judged
  against a margin (``report.accuracy_margin``, default 2 points): see :func:`benchmark.stats.margin_verdict`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from benchmark.config import from_dict
from benchmark.overrides import unflatten
from benchmark.methods import method_class
from benchmark.report.tables import CELL, FLOP_NOTE, Table, method_label
from benchmark.stats import CONFIDENCE, fmt_signed_ci, margin_verdict, paired_difference
from benchmark.workflow.names import ARCH_KEYS, BASELINE, RUNNER_UP, UNDER_STUDY

PAPER_BACKBONES = {"vit_base_patch16_224": "ViT-B/16", "vit_large_patch16_224": "ViT-L/16"}
DEGENERATE = ("head = tail = 0 with token (CLS) pooling: the local-loss update and EL2N scores are degenerate "
              "(the client path classifies the input-layer CLS token, identical for every image)")


@dataclass(frozen=True)
class Claim:
    """One headline number of the paper.

    Attributes:
        key: Short identifier.
        statement: The claim as the paper's summaries give it.
        value: The paper's number: a percentage of FL (``unit="%"``) or a ratio to FL (``unit="×"``).
        metric: ``client_flops`` (client GFLOPs per round) or ``comm`` (bytes per round, up + down).
        backbones: timm names the number is stated for (others are shown as context).
    """

    key: str
    statement: str
    value: float
    unit: str
    metric: str
    backbones: tuple[str, ...]


PAPER_CLAIMS = (
    Claim("local_compute", "0.46% of FL's local computing (backbone not named in the summaries)", 0.46, "%",
          "client_flops", tuple(PAPER_BACKBONES)),
    Claim("comm_vit_b", "53% less communication than FL, ≈0.47× on ViT-Base", 0.47, "×", "comm",
          ("vit_base_patch16_224",)),
    Claim("comm_vit_l", "≈0.19× FL's communication on ViT-Large", 0.19, "×", "comm", ("vit_large_patch16_224",)),
)


def fmt_value(value: float, unit: str) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.3g}%" if unit == "%" else f"{value:.2f}×"


def setting_text(settings: Mapping[str, Any], samples: int | None = None,
                 method_params: Mapping[str, Any] | None = None) -> str:
    """The knobs a cost number depends on: the run settings (defaults filled in) and SFPrompt's own
    ``method_params`` (defaults filled in), so every open choice of the paper is stated."""

    cfg = from_dict({**unflatten(dict(settings)), "method_params": dict(method_params or {})})
    m, t = cfg.model, cfg.train
    p = method_class(UNDER_STUDY).params(cfg)
    parts = [f"split {m.head_blocks}/{m.tail_blocks}"]
    if samples is not None:
        parts.append(f"{samples} samples/client")
    parts += [f"prompt_len {m.prompt_len}", f"batch_size {t.batch_size}"]
    parts += [f"{k} {str(v).lower() if isinstance(v, bool) else f'{v:g}' if isinstance(v, float) else v}"
              for k, v in dataclasses.asdict(p).items()]
    return ", ".join(parts)


def _resized(settings: Mapping[str, Any]) -> bool:
    """Whether an accounting entry changes the timm architecture (a CPU-sized variant, not the paper's)."""
    return any(settings.get(f"model.{k}") is not None for k in ARCH_KEYS[1:])


def verdict(ours: float, paper: float, tolerance: float) -> str:
    if pd.isna(ours):
        return "not computed"
    return "reproduces" if abs(ours - paper) <= tolerance * abs(paper) else "does not reproduce"


def range_verdict(values: Mapping[str, float], paper: float, tolerance: float) -> str:
    """The verdict over every reading: all, some (named) or none reproduce the paper's number."""
    ok = [r for r, v in values.items() if verdict(v, paper, tolerance) == "reproduces"]
    if not values or all(pd.isna(v) for v in values.values()):
        return "not computed"
    if len(ok) == len(values):
        return "reproduces"
    if ok:
        return f"reproduces under some readings ({', '.join(ok)})"
    return "does not reproduce"


def _value(group: pd.DataFrame, reference: str, column: str, reading: str = "default") -> float:
    """SFPrompt's ``column`` in ``reading`` relative to the reference method's default reading."""
    reads = group.reading if "reading" in group else pd.Series("default", index=group.index)
    sf = group[(group.method == UNDER_STUDY) & (reads == reading)]
    ref = group[(group.method == reference) & (reads == "default")]
    if not len(sf) or not len(ref) or not ref[column].iloc[0]:
        return math.nan
    return float(sf[column].iloc[0] / ref[column].iloc[0])


def _readings(group: pd.DataFrame) -> list[str]:
    if "reading" not in group:
        return ["default"]
    return list(dict.fromkeys(group[group.method == UNDER_STUDY].reading))


def claims_table(
    accounting: pd.DataFrame,
    accounting_settings: Mapping[tuple[str, str], Mapping[str, Any]],
    runs: pd.DataFrame,
    reference: str = BASELINE,
    tolerance: float = 0.1,
    accuracy_margin: float = 2.0,
    method_params: Mapping[str, Any] | None = None,
) -> Table:
    """The claims table.

    Args:
        accounting: Accounting rows with ``label, split, backbone, head_blocks, tail_blocks,
            samples_per_client, method, reading, client_gflops_round, comm_mb_total, break_even_samples``.
        accounting_settings: ``(label, split) -> settings`` of each accounting entry (from ``grid.json``).
        runs: Method runs (summary columns) for the measured and accuracy rows; rows with ``lr_pick`` =
            ``runner_up`` are the recheck runs (``tuning.recheck``), read by the accuracy rows only.
        reference: The FL baseline the paper compares against (FedAvg full fine-tuning).
        tolerance: Relative tolerance of "reproduces".
        accuracy_margin: Points by which SFPrompt may trail the reference and still be "competitive".
        method_params: SFPrompt's ``method_params`` in the profile (stated in the setting column).
    """
    rows: list[dict[str, Any]] = []
    ref_label = method_label(reference)
    groups = list(accounting.groupby(["label", "split"], sort=False)) if len(accounting) else []
    for claim in PAPER_CLAIMS:
        for (label, split), grp in groups:
            backbone, settings = grp.backbone.iloc[0], accounting_settings.get((label, split), {})
            dataset = grp.dataset.iloc[0] if "dataset" in grp and pd.notna(grp.dataset.iloc[0]) else None
            paper_scale = backbone in PAPER_BACKBONES and not _resized(settings)
            applies = paper_scale and backbone in claim.backbones
            row_claim = claim
            if claim.metric == "comm" and not applies:
                if paper_scale or claim is not PAPER_CLAIMS[-1]:
                    continue  # another claim's backbone, or the context row comes once, after the last claim
                row_claim = dataclasses.replace(claim, key="comm_context", statement="communication relative to "
                                                "FL (this suite's backbone)")
            column = "client_gflops_round" if claim.metric == "client_flops" else "comm_mb_total"
            scale = 100 if claim.unit == "%" else 1
            values = {r: scale * _value(grp, reference, column, r) for r in _readings(grp)}
            ours = values.get("default", math.nan)
            head, tail = int(grp.head_blocks.iloc[0]), int(grp.tail_blocks.iloc[0])
            samples = int(grp.samples_per_client.iloc[0])
            finite = [v for v in values.values() if not pd.isna(v)]
            notes = []
            if len(values) > 1:
                notes.append("readings: " + "; ".join(f"{r} {fmt_value(v, claim.unit)}" for r, v in values.items()))
            if claim.metric == "comm":
                sf = grp[(grp.method == UNDER_STUDY) & ((grp.reading == "default") if "reading" in grp else True)]
                be = sf.break_even_samples.iloc[0] if len(sf) and "break_even_samples" in sf else math.nan
                notes.append(f"at {samples} samples/client; grows with samples/client, equals {ref_label} at "
                             f"{be:.0f} samples/client (break-even)")
            if head == 0 and tail == 0:
                notes.append("degenerate local-loss/EL2N path (see caveat)")
            rows.append({
                "claim": row_claim.key, "statement": row_claim.statement,
                "paper": fmt_value(claim.value, claim.unit) if applies or claim.metric != "comm" else "–",
                "ours": fmt_value(ours, claim.unit), "ours_value": ours,
                "range": (f"{fmt_value(min(finite), claim.unit)} – {fmt_value(max(finite), claim.unit)}"
                          if len(finite) > 1 else fmt_value(ours, claim.unit)),
                "range_min": min(finite) if finite else math.nan, "range_max": max(finite) if finite else math.nan,
                "source": "analytic",
                "backbone": (PAPER_BACKBONES[backbone] if paper_scale else f"{label} (resized {backbone})")
                + (f", {dataset} size" if dataset else ""),
                "setting": setting_text(settings, samples, method_params),
                "verdict": range_verdict(values, claim.value, tolerance) if applies else "context only",
                "note": "; ".join(notes),
            })
    recheck = runs.lr_pick == RUNNER_UP if "lr_pick" in runs else pd.Series(False, index=runs.index)
    rechecks, runs = runs[recheck], runs[~recheck]
    rows += _measured_rows(runs, reference)
    rows += _accuracy_rows(runs, reference, accuracy_margin, rechecks)
    has_zero = any(int(g.head_blocks.iloc[0]) == 0 and int(g.tail_blocks.iloc[0]) == 0 for _, g in groups) or (
        len(runs) and ((runs.head_blocks == 0) & (runs.tail_blocks == 0)).any())
    rows.append({"claim": "caveat", "statement": "split head = tail = 0 (the setting of the 0.46% figure)",
                 "paper": "–", "ours": "–", "ours_value": math.nan, "range": "–", "source": "method",
                 "backbone": "all", "setting": "split 0/0, token pooling",
                 "verdict": "degenerate" if has_zero else "not evaluated", "note": DEGENERATE})
    data = pd.DataFrame(rows)
    display = data.rename(columns={"statement": "Claim", "paper": "Paper", "ours": "Ours", "range": "Range",
                                   "source": "Source", "backbone": "Backbone", "setting": "Setting",
                                   "verdict": "Verdict", "note": "Note"})[
        ["Claim", "Paper", "Ours", "Range", "Backbone", "Source", "Setting", "Verdict", "Note"]]
    caption = (f"The paper's headline claims beside ours. Client computation: SFPrompt's client GFLOPs per round "
               f"as % of {ref_label} (federated full fine-tuning); communication: SFPrompt's bytes per round (up + "
               f"down) as a multiple of {ref_label}'s, per participating client. 'Ours' is the default reading of "
               f"what the paper leaves open, 'Range' spans every defensible reading (each listed in the note), and "
               f"the verdict follows the range. 'analytic' rows come from the accounting verb at the stated split "
               f"(head/tail blocks on the client) and samples per client, 'measured' rows from the runs' ledgers. "
               f"'reproduces' means within ±{tolerance:.0%} of the paper's number. Accuracy: SFPrompt − "
               f"{ref_label}, paired by seed, mean ± {CONFIDENCE:.0%} CI; 'competitive' is reproduced when the whole "
               f"interval lies above −{accuracy_margin:g} points, not reproduced when it lies below, inconclusive "
               f"otherwise; where the runs were rechecked at the runner-up learning rates, a verdict stands only "
               f"when it is the same with either method at its runner-up, else it reads inconclusive. Settings are "
               f"the suite's, never tuned to a claim. {FLOP_NOTE}.")
    return Table("claims", data, display, caption, _summary(data))


def _measured_rows(runs: pd.DataFrame, reference: str) -> list[dict[str, Any]]:
    rows = []
    if not len(runs):
        return rows
    for (backbone, head, tail), grp in runs.groupby(["backbone", "head_blocks", "tail_blocks"], sort=False):
        means = grp.groupby("method")[["client_gflops_round", "comm_mb_round"]].mean().reset_index()
        for key, metric, unit, column in (("local_compute", "client computation", "%", "client_gflops_round"),
                                          ("comm", "communication", "×", "comm_mb_round")):
            ratio = _value(means, reference, column)
            value = 100 * ratio if unit == "%" else ratio
            rows.append({
                "claim": f"{key}_measured", "statement": f"SFPrompt's {metric} relative to {method_label(reference)}",
                "paper": "–", "ours": fmt_value(value, unit), "ours_value": value, "range": fmt_value(value, unit),
                "source": "measured", "backbone": backbone,
                "setting": f"split {head}/{tail}, mean over {grp.dir.nunique()} runs",
                "verdict": "context only", "note": "degenerate local-loss/EL2N path (see caveat)"
                if head == 0 and tail == 0 else "",
            })
    return rows


def _per_seed(grp: pd.DataFrame, method: str) -> pd.Series:
    return grp[grp.method == method].groupby("seed").final_accuracy.mean()


def _recheck(grp: pd.DataFrame, sf: pd.Series, fl: pd.Series, reference: str, margin: float,
             verdict: str) -> tuple[str, list[str]]:
    """The verdict rechecked at the runner-up rates (``grp``: one cell's recheck runs): with SFPrompt at its
    runner-up against the reference at its choice, and the reference at its runner-up against SFPrompt at its
    choice. Returns the verdict that stands (``verdict`` where every recheck agrees, else ``inconclusive``) and
    one note part per recheck."""
    parts, verdicts = [], [verdict]
    for method, pair in ((UNDER_STUDY, lambda alt: (alt, fl)), (reference, lambda alt: (sf, alt))):
        runs = grp[grp.method == method]
        if not len(runs):
            continue
        d, h, n = paired_difference(*pair(_per_seed(grp, method)))
        v = margin_verdict(d, h, n, margin)
        verdicts.append(v)
        lr = runs.train_lr.iloc[0] if "train_lr" in runs else math.nan
        rate = f"lr{'' if pd.isna(lr) else f' {lr:g}'}"
        taken = runs.lr_taken.iloc[0] if "lr_taken" in runs else math.nan
        # a record with no runner-up (every other grid point diverged) gave its chosen rate: said, not relabelled
        rate = f"runner-up {rate}" if pd.isna(taken) or taken == "runner_up" else \
            f"chosen {rate} (its record has no runner-up)"
        parts.append(f"{method_label(method)} at its {rate}: {fmt_signed_ci(d, h, n)} pp, {v}")
    return (verdict if len(set(verdicts)) == 1 else "inconclusive"), parts


def _accuracy_rows(runs: pd.DataFrame, reference: str, margin: float,
                   rechecks: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """SFPrompt − ``reference`` per cell. The margin verdict judges the paper only on a backbone it used (a
    paper backbone, not resized); on any other it reads ``context only (this scale)`` and the note keeps what
    the interval says, as the cost rows do on this suite's backbone. With recheck runs (``rechecks``, the same
    cells at each method's runner-up learning rate) the verdict stands only where every recheck agrees
    (:func:`_recheck`), else it is ``inconclusive``; the note gives each recheck's difference and verdict."""
    rows = []
    if not len(runs):
        return rows
    rechecks = runs.iloc[0:0] if rechecks is None else rechecks
    for cell, grp in runs.groupby(CELL, sort=False):
        sf, fl = _per_seed(grp, UNDER_STUDY), _per_seed(grp, reference)
        d, h, n = paired_difference(sf, fl)
        if not n:
            continue
        scope = grp[grp.method == UNDER_STUDY].iloc[0]
        paper_scale = scope.get("model_backbone") in PAPER_BACKBONES and not scope.get("resized", True)
        alt = rechecks.merge(pd.DataFrame([cell], columns=CELL), on=CELL) if len(rechecks) else rechecks
        measured, parts = _recheck(alt, sf, fl, reference, margin, margin_verdict(d, h, n, margin))
        rows.append({
            "claim": "accuracy", "statement": f"accuracy competitive with {method_label(reference)}",
            "paper": "competitive", "ours": f"{fmt_signed_ci(d, h, n)} pp", "ours_value": d,
            "range": "–" if n < 2 else f"{d - h:+.1f} – {d + h:+.1f} pp", "source": "measured",
            "backbone": cell[0], "setting": _accuracy_setting(cell, scope, n, margin),
            "verdict": measured if paper_scale else "context only (this scale)",
            "note": "; ".join([f"SFPrompt {sf.mean():.1f}% vs {method_label(reference)} {fl.mean():.1f}% (means); "
                               f"paired {CONFIDENCE:.0%} CI" + (" needs 2+ seeds" if n < 2 else "")]
                              + (["rechecked at the runner-up rates: " + "; ".join(parts)
                                  + f" -> {measured}"] if parts else [])
                              + ([] if paper_scale else [f"at this scale the interval reads: {measured}"])),
        })
    return rows


def _accuracy_setting(cell: tuple, scope: pd.Series, n: int, margin: float) -> str:
    """Dataset, partition, split, rounds, samples per client, the backbone and its source top-1, seeds, margin."""
    parts = [str(cell[1]), str(cell[2]), f"split {int(scope.head_blocks)}/{int(scope.tail_blocks)}"]
    if pd.notna(scope.get("rounds", float("nan"))):
        parts.append(f"{int(scope.rounds)} rounds")
    if pd.notna(scope.get("samples_per_client", float("nan"))):
        parts.append(f"{scope.samples_per_client:g} samples/client")
    backbone = PAPER_BACKBONES.get(scope.get("model_backbone"), scope.get("model_backbone") or cell[0])
    top1 = scope.get("backbone_top1", float("nan"))
    parts.append(f"backbone {cell[0]} ({backbone}{', resized' if scope.get('resized') else ''}"
                 + (f", {top1:.1f}% top-1 on its source" if pd.notna(top1) else "") + ")")
    return ", ".join(parts + [f"n = {n} seed(s)", f"margin {margin:g} pp"])


def _summary(data: pd.DataFrame) -> list[str]:
    """Which split reproduces the 0.46% figure, per paper backbone, over the readings."""
    notes = []
    sel = data[(data.claim == "local_compute") & (data.source == "analytic") & (data.verdict != "context only")]
    for backbone, grp in sel.groupby("backbone", sort=False):
        parts = [f"{s.split(',')[0]}: {o} (range {r}; {v})" for s, o, r, v in
                 zip(grp.setting, grp.ours, grp["range"], grp.verdict)]
        notes.append(f"0.46% local computing on {backbone}: " + "; ".join(parts))
    if sel.empty:
        notes.append("0.46% local computing: no paper-scale backbone was accounted in this profile "
                     "(add vit_base_patch16_224 to accounting.backbones)")
    return notes
