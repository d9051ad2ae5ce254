"""Privacy, measured: reconstruct clients' images from what the server receives (issue #12).

Threat model (what the numbers mean):

* **Adversary**: an honest-but-curious server. It follows the protocol and tries to recover the clients'
  images from what it legitimately receives.
* **It knows** the architecture and every frozen pre-trained weight (public checkpoints, or the workflow's
  own pre-trained backbone), the split point, the input normalisation, and everything it aggregates: the
  prompts and the tail (SFPrompt) or the client part, i.e. the head (SFL-V1/V2, whose fed server averages
  it). So the client map ``x -> head(x)`` is known exactly at the state the client used: the ``server = all``
  rows. SplitFed (Thapa et al. 2022) separates the main server, which receives the smashed data, from the fed
  server, which averages the heads; the ``server = main`` rows (SFL-V1/V2, final round) are the main server
  alone, which knows the head only as broadcast in round 0 (the pre-trained weights). ``all`` for SplitFed
  assumes the two collude.
* **It sees** exactly what the communication ledger records as sent up: the smashed data (the head's output,
  ``kind = smashed``), labels and, for SFPrompt, tail-input gradients and parameters. The attacks here use
  the smashed data only.
* **Public auxiliary data**: images of the same distribution that no client holds (a disjoint split: the
  test split of the dataset), used by the learned decoder, the LMMSE attack's patch prior and the mean-image
  baseline.
* **Out of scope**: FedAvg's and FedPrompt's servers see parameters (or updates) only; gradient-inversion
  attacks on those (e.g. Zhu et al. 2019, Geiping et al. 2020) are not run, so those methods have no row.
  Label inference and model stealing (UnSplit's other attacks) are not run either.
* **Defence**: Gaussian noise of standard deviation σ (absolute, activation units) added to every element of
  the smashed data before it is sent (:func:`benchmark.privacy.attacks.add_noise`), known to the server. The
  same noise is a training knob of every split method (``method_params.smashed_noise_sigma``, added at the one
  send site :meth:`benchmark.federation.method.Method.send_smashed`): with the workflow's
  ``privacy.noise_training`` the split methods are trained at each σ > 0 in the privacy cell, so the table gives
  the accuracy cost (paired by seed against σ = 0), and a trained σ's final round is attacked on that run's own
  head state, i.e. what a server facing the defence really sees. Elsewhere (another split, or training off) the
  noise is added to the σ = 0 run's smashed data in the evaluation only, and the cost is "not measured".

Modules: :mod:`~benchmark.privacy.attacks` (the registry ``ATTACKS``: analytic, lmmse, optimisation, decoder,
and the mean-image baseline), :mod:`~benchmark.privacy.prior` (the auxiliary images' patch prior and the LMMSE
inverse), :mod:`~benchmark.privacy.metrics` (PSNR / SSIM from scikit-image, mean ± 95% CI),
:mod:`~benchmark.privacy.evaluate` (the workflow's ``privacy`` job). Report: :mod:`benchmark.report.privacy`.
"""

from benchmark.privacy.attacks import ATTACKS, AttackNotApplicable, AttackSettings, ServerKnowledge, add_noise, reconstruct
from benchmark.privacy.metrics import PSNR_CAP, mean_ci, psnr, ssim

__all__ = ["ATTACKS", "AttackNotApplicable", "AttackSettings", "ServerKnowledge", "add_noise", "reconstruct",
           "PSNR_CAP", "mean_ci", "psnr", "ssim"]
