# Learning rates chosen on a validation split (benchmark/tuning.py; only with a `tuning` section): one run per
# (backbone, dataset, method, grid multiplier) on the training data minus the validation split, then one small
# job per (backbone, dataset, method) that scores them and writes the choice, results/tuning/.../{method}.json,
# which every train job of that method reads (--lr-from). A grid point that diverges is recorded, not fatal.


rule tune_run:
    input:
        unpack(WF.tune_point_input),
    output:
        metrics=f"{R}/tuning/{{backbone}}/{{dataset}}/{{method}}/x{{mult}}/metrics.csv",
        config=f"{R}/tuning/{{backbone}}/{{dataset}}/{{method}}/x{{mult}}/config.resolved.yaml",
        env=f"{R}/tuning/{{backbone}}/{{dataset}}/{{method}}/x{{mult}}/env.json",
    log:
        f"{R}/logs/tuning/{{backbone}}/{{dataset}}/{{method}}/x{{mult}}.log",
    benchmark:
        f"{R}/logs/tuning/{{backbone}}/{{dataset}}/{{method}}/x{{mult}}.benchmark.tsv",
    wildcard_constraints:
        method=r"[a-z0-9_]+",
        mult=r"[0-9][0-9.e+-]*",
    params:
        sets=WF.tune_point_args,
        weights=WF.weights_arg,
        dir=WF.run_dir,
    threads: RES["train"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["train"]["mem_mb"],
        runtime=RES["train"]["runtime"],
        gpu=RES["train"]["gpu"],
    conda:
        ENV
    shell:
        "python -m benchmark train {params.sets} {params.weights} --diverged-ok --threads {threads} "
        "--out {params.dir} -q > {log} 2>&1"


rule tune:
    input:
        WF.tune_input,
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
    conda:
        ENV
    shell:
        "python -m benchmark tune --spec {params.spec:q} --out {output} > {log} 2>&1"


rule tuning:
    input:
        WF.tuning_targets(),


localrules:
    tune,
    tuning,
