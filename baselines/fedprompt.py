"""FedPrompt (Zhao et al. 2023, "FedPrompt: Communication-Efficient and Privacy-Preserving Prompt Tuning
in Federated Learning", ICASSP). Card: ``baselines/README.md``.

Prompt tuning under FedAvg: VPT-style prompts (Jia et al. 2022, the same ``prompt_len`` and placement as
SFPrompt) plus the classifier are trained on each client over the frozen full backbone; only prompts and
classifier are sent and averaged. Departure: the original FedPrompt tunes text prompts of a language
model; here, as in SFPrompt's comparison, it is visual prompt tuning of the same ViT.
"""

from __future__ import annotations

from baselines.fedavg import FedAvg
from benchmark.federation.method import register_method


@register_method("fedprompt")
class FedPrompt(FedAvg):
    """FedAvg over prompts + classifier, frozen backbone; the whole forward runs on the client."""

    label = "FedPrompt"
    order = 20
    client_prefixes = ("head.prompts.", "tail.prompts.", "tail.head.", "tail.fc_norm.")
    uses_prompts = True
