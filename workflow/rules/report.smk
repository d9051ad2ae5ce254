# Tables (csv, md, booktabs tex), figures (pdf, png) and manifest.json from the finished runs. grid.json holds
# the validated config and the expanded grid (which run plays which role); the report reads only results/.


rule grid:
    output:
        f"{R}/grid.json",
    log:
        f"{R}/logs/report/grid.log",
    benchmark:
        f"{R}/logs/report/grid.benchmark.tsv",
    params:
        config=WF.config_json(),
        digest=WF.digest(),
    conda:
        ENV
    shell:
        "python -m benchmark grid --config-json {params.config:q} --out {output} > {log} 2>&1"


rule tables:
    input:
        grid=f"{R}/grid.json",
        runs=WF.run_targets(),
        accounting=WF.accounting_targets(),
        system=WF.system_targets(),
        privacy=WF.privacy_targets(),
        cards=WF.strength_cards(),
        tuning=WF.tuning_targets(),
    output:
        [report(p, caption=c, category="Tables") if c else p for p, c in WF.report_outputs("tables")],
    log:
        f"{R}/logs/report/tables.log",
    benchmark:
        f"{R}/logs/report/tables.benchmark.tsv",
    params:
        results=WF.results_dir,
    threads: RES["report"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["report"]["mem_mb"],
        runtime=RES["report"]["runtime"],
    conda:
        ENV
    shell:
        "python -m benchmark report --results {params.results} --only tables > {log} 2>&1"


rule figures:
    input:
        grid=f"{R}/grid.json",
        runs=WF.run_targets(),
        partitions=WF.partition_targets(),
        privacy=WF.privacy_targets(),
        cards=WF.strength_cards(),
    output:
        [report(p, caption=c, category="Figures") if c else p for p, c in WF.report_outputs("figures")],
    log:
        f"{R}/logs/report/figures.log",
    benchmark:
        f"{R}/logs/report/figures.benchmark.tsv",
    params:
        results=WF.results_dir,
    threads: RES["report"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["report"]["mem_mb"],
        runtime=RES["report"]["runtime"],
    conda:
        ENV
    shell:
        "python -m benchmark report --results {params.results} --only figures > {log} 2>&1"


rule manifest:
    input:
        grid=f"{R}/grid.json",
        tables=WF.table_targets(),
        figures=WF.figure_targets(),
    output:
        f"{R}/manifest.json",
    log:
        f"{R}/logs/report/manifest.log",
    benchmark:
        f"{R}/logs/report/manifest.benchmark.tsv",
    params:
        results=WF.results_dir,
    conda:
        ENV
    shell:
        "python -m benchmark report --results {params.results} --only manifest > {log} 2>&1"
