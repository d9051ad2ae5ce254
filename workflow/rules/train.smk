# One federated run per job: results/runs/{backbone}/{dataset}/{partition}/{variant}/seed{seed}/.
# The run's settings are params (--set key=value), so editing the config reruns exactly the runs it changes.


rule train:
    input:
        unpack(WF.train_input),
    output:
        metrics=f"{R}/runs/{{backbone}}/{{dataset}}/{{partition}}/{{variant}}/seed{{seed}}/metrics.csv",
        comm=f"{R}/runs/{{backbone}}/{{dataset}}/{{partition}}/{{variant}}/seed{{seed}}/comm.csv",
        flops=f"{R}/runs/{{backbone}}/{{dataset}}/{{partition}}/{{variant}}/seed{{seed}}/flops.csv",
        env=f"{R}/runs/{{backbone}}/{{dataset}}/{{partition}}/{{variant}}/seed{{seed}}/env.json",
        config=f"{R}/runs/{{backbone}}/{{dataset}}/{{partition}}/{{variant}}/seed{{seed}}/config.resolved.yaml",
        head_state=f"{R}/runs/{{backbone}}/{{dataset}}/{{partition}}/{{variant}}/seed{{seed}}/head_state.safetensors",
    log:
        f"{R}/logs/train/{{backbone}}/{{dataset}}/{{partition}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{R}/logs/train/{{backbone}}/{{dataset}}/{{partition}}/{{variant}}/seed{{seed}}.benchmark.tsv",
    params:
        sets=WF.train_args,
        weights=WF.weights_arg,
        lr=WF.lr_arg,
        dir=WF.run_dir,
    # the runs a privacy job reads go first, so that the long privacy job overlaps the other runs' training
    # (benchmark/workflow/privacy.py, scheduling only)
    priority: WF.train_priority
    threads: RES["train"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["train"]["mem_mb"],
        runtime=RES["train"]["runtime"],
        gpu=RES["train"]["gpu"],
    conda:
        ENV
    shell:
        "python -m benchmark train {params.sets} {params.weights} {params.lr} --partition {input.partition} --threads {threads} "
        "--out {params.dir} --diverged-ok -q > {log} 2>&1"


rule runs:
    input:
        WF.run_targets(),
