# The system model's paper-scale input (no training): one client's round of every method, FLOPs from the
# accounting table and bytes + message legs from the methods' expected transfers:
# results/system/{backbone}_h{head}t{tail}.csv. The report re-times it (and every run) on config/system/*.yaml.


rule system:
    input:
        accounting=f"{R}/accounting/{{backbone}}_{{split}}.csv",
    output:
        f"{R}/system/{{backbone}}_{{split}}.csv",
    log:
        f"{R}/logs/system/{{backbone}}_{{split}}.log",
    benchmark:
        f"{R}/logs/system/{{backbone}}_{{split}}.benchmark.tsv",
    params:
        args=WF.accounting_args,
    threads: RES["system"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["system"]["mem_mb"],
        runtime=RES["system"]["runtime"],
        gpu=0,
    conda:
        ENV
    shell:
        "python -m benchmark system usage {params.args} --accounting {input.accounting} --threads {threads} "
        "--out {output} > {log} 2>&1"
