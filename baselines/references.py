"""References that give the federated numbers meaning (Kornblith et al. 2019's linear-evaluation protocol;
centralized training as the usual upper bound). Card: ``baselines/README.md``.

* ``linear_probe``: the frozen pre-trained backbone with only the classifier (and ``fc_norm`` where the
  backbone has one) trained, under the same FedAvg loop. It measures how strong the features are that prompt
  tuning relies on: a prompt method far above it adapts the features; one near it only re-weights them.

Centralized full fine-tuning and centralized prompt tuning are *configurations*, not classes: FedAvg and
FedPrompt with one client holding the pooled training data (the workflow's ``references`` section builds
them with the same seeds, batch size and number of sample passes), so they share the ledgers, FLOP hooks and
tests of the federated methods.
"""

from __future__ import annotations

from baselines.fedavg import FedAvg
from benchmark.federation.method import register_method


@register_method("linear_probe")
class LinearProbe(FedAvg):
    """FedAvg over the classifier alone; the backbone stays frozen and the whole forward runs on the client."""

    label = "Linear probe"
    order = 90
    reference = True
    client_prefixes = ("tail.head.", "tail.fc_norm.")
    uses_prompts = False
