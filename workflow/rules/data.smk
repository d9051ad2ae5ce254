# Shared inputs, computed once: client partitions (per dataset, partition and seed; every backbone and variant
# of a cell reads the same file) and backbones pre-trained in the workflow (CPU profiles: no hub weights).


rule partition:
    output:
        f"{R}/partitions/{{dataset}}/{{partition}}/seed{{seed}}.json",
    log:
        f"{R}/logs/partition/{{dataset}}/{{partition}}/seed{{seed}}.log",
    params:
        sets=WF.partition_args,
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


rule pretrain:
    output:
        weights=f"{R}/backbones/{{backbone}}.safetensors",
        card=f"{R}/backbones/{{backbone}}.json",
    log:
        f"{R}/logs/pretrain/{{backbone}}.log",
    params:
        sets=WF.pretrain_args,
    threads: RES["pretrain"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["pretrain"]["mem_mb"],
        runtime=RES["pretrain"]["runtime"],
        gpu=RES["pretrain"]["gpu"],
    conda:
        ENV
    shell:
        "python -m benchmark pretrain {params.sets} --threads {threads} --out {output.weights} -q > {log} 2>&1"


rule partitions:
    input:
        WF.partition_targets(),


rule backbones:
    input:
        [f"{R}/backbones/{b}.safetensors" for b in WF.pretrained()],
