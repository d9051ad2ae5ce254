# Analytic per-round client FLOPs and bytes of every method (no training; paper-scale backbones run on a CPU):
# results/accounting/{backbone}_h{head}t{tail}.csv.


rule account:
    output:
        f"{R}/accounting/{{backbone}}_{{split}}.csv",
    log:
        f"{R}/logs/accounting/{{backbone}}_{{split}}.log",
    benchmark:
        f"{R}/logs/accounting/{{backbone}}_{{split}}.benchmark.tsv",
    params:
        args=WF.accounting_args,
    threads: RES["accounting"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["accounting"]["mem_mb"],
        runtime=RES["accounting"]["runtime"],
        gpu=0,
    conda:
        ENV
    shell:
        "python -m benchmark accounting {params.args} --threads {threads} --out {output} > {log} 2>&1"


rule accounting:
    input:
        WF.accounting_targets(),
