"""sfprompt-bench: SFPrompt against FedAvg, FedPrompt, SFL-V1 and SFL-V2. A table of contents; the rules live in
workflow/rules/, their logic in the benchmark/workflow/ package, and every job is one `python -m benchmark <verb>` call.

    snakemake --cores 2 --configfile config/smoke.yaml all     # offline, minutes (the tests run this)
    snakemake --cores 2 all                                    # config/default.yaml: the main CPU job
    snakemake --cores 2 --configfile config/paper.yaml accounting    # paper-scale FLOPs and bytes, no training
    snakemake --profile profiles/slurm --configfile config/paper.yaml all     # GPU cluster
    snakemake --report report.html --configfile config/smoke.yaml             # figures with captions
"""

from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the main job's profile instead of being merged into it.
if not workflow.config_settings.configfiles:

    configfile: "config/default.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/accounting.smk"
include: "workflow/rules/system.smk"
include: "workflow/rules/privacy.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        WF.final_targets(),
