# Learning rates chosen on a validation split (benchmark/tuning.py; only with a `tuning` section): one job per
# search ({method}: a method, or a pooled reference's name) trains its grid points and tuning seeds one after the
# other in its own process (the tune verb; a point already finished with the same config is reused, an interrupted
# one resumes), each in results/tuning/.../{method}/x{mult}/seed{seed}/, then scores them and writes the choice,
# results/tuning/.../{method}.json, which every train job of that method or reference reads (--lr-from). A grid point that diverges is recorded, not fatal.


rule tune:
    input:
        unpack(WF.tune_input),
    output:
        f"{R}/tuning/{{backbone}}/{{dataset}}/{{method}}.json",
    log:
        f"{R}/logs/tuning/{{backbone}}/{{dataset}}/{{method}}.log",
    benchmark:
        f"{R}/logs/tuning/{{backbone}}/{{dataset}}/{{method}}.benchmark.tsv",
    wildcard_constraints:
        method=r"[a-z0-9_]+",
    params:
        spec=WF.tune_spec,
    # first among ready jobs: every train job of the method waits for its search (scheduling only: no result
    # depends on the order jobs run in)
    priority: 20
    threads: RES["train"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["train"]["mem_mb"],
        runtime=lambda wc: RES["train"]["runtime"] * len(WF.tuning_entry(wc).points),
        gpu=RES["train"]["gpu"],
    conda:
        ENV
    shell:
        "python -m benchmark tune --spec {params.spec:q} --threads {threads} --out {output} --quiet > {log} 2>&1"


rule tuning:
    input:
        WF.tuning_targets(),


localrules:
    tuning,
