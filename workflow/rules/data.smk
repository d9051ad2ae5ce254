# Shared inputs, computed once: decoded images (per dataset and image size: every job reading the dataset
# loads this file instead of decoding), client partitions (per dataset, partition and seed; every backbone and
# variant of a cell reads the same file) and backbones pre-trained in the workflow (CPU profiles: no hub weights).


rule cache:
    output:
        "{cachedir}/{dataset}-{size}px.safetensors",
    log:
        "{cachedir}/logs/{dataset}-{size}px.log",
    benchmark:
        "{cachedir}/logs/{dataset}-{size}px.benchmark.tsv",
    wildcard_constraints:
        cachedir="|".join(re.escape(d) for d in WF.cache_dirs()),
        size=r"\d+",
    params:
        sets=WF.cache_args,
    # first among ready jobs, with pre-training: every other job waits for the data and the backbone, so they are
    # the critical path (scheduling only: no result depends on the order jobs run in)
    priority: 30
    threads: RES["cache"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["cache"]["mem_mb"],
        runtime=RES["cache"]["runtime"],
        gpu=0,
    conda:
        ENV
    shell:
        "python -m benchmark cache --dataset {wildcards.dataset} --img-size {wildcards.size} "
        "--cache-dir {wildcards.cachedir:q} {params.sets} --threads {threads} -q > {log} 2>&1"


rule partition:
    input:
        unpack(WF.partition_input),
    output:
        f"{R}/partitions/{{dataset}}/{{partition}}/seed{{seed}}.json",
    log:
        f"{R}/logs/partition/{{dataset}}/{{partition}}/seed{{seed}}.log",
    benchmark:
        f"{R}/logs/partition/{{dataset}}/{{partition}}/seed{{seed}}.benchmark.tsv",
    params:
        sets=WF.partition_args,
    # with the data: every train and tune job of its cell waits for it, and it takes a fraction of a second
    # (scheduling only)
    priority: 30
    threads: RES["partition"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["partition"]["mem_mb"],
        runtime=RES["partition"]["runtime"],
        gpu=RES["partition"]["gpu"],
    conda:
        ENV
    shell:
        "python -m benchmark partition {params.sets} --threads {threads} --out {output} -q > {log} 2>&1"


# One job per pre-trained backbone: it copies the weights from the machine-wide backbone cache (backbone_cache;
# benchmark/backbone_cache.py) when an entry for the same settings and code exists, else trains into the cache
# (resumable per epoch) and copies them. `checkpoints` are the same trajectory at pretrain.checkpoints < 1.
rule pretrain:
    input:
        unpack(WF.pretrain_input),
    output:
        weights=f"{R}/backbones/{{backbone}}.safetensors",
        card=f"{R}/backbones/{{backbone}}.json",
        checkpoints=[f"{R}/backbones/{{backbone}}@{p}.{x}" for p in WF.checkpoint_pcts() for x in ("safetensors", "json")],
    log:
        f"{R}/logs/pretrain/{{backbone}}.log",
    benchmark:
        f"{R}/logs/pretrain/{{backbone}}.benchmark.tsv",
    params:
        sets=WF.pretrain_args,
        cache_dir=WF.backbone_cache,
    priority: 30  # the critical path, with the data (rule cache)
    threads: RES["pretrain"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["pretrain"]["mem_mb"],
        runtime=RES["pretrain"]["runtime"],
        gpu=RES["pretrain"]["gpu"],
    conda:
        ENV
    shell:
        "python -m benchmark pretrain {params.sets} --threads {threads} --cache-dir {params.cache_dir:q} "
        "--out {output.weights} -q > {log} 2>&1"


rule partitions:
    input:
        WF.partition_targets(),


rule backbones:
    input:
        [f"{R}/backbones/{b}.safetensors" for b in WF.pretrained()],
        [f for b in WF.pretrained() for f in WF.checkpoint_files(b)],
