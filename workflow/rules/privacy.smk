# Reconstruction attacks on the smashed data the server receives, one job per split point of the privacy cell
# (benchmark/privacy): results/privacy/{backbone}_h{head}t{tail}.csv (per image: PSNR dB, SSIM) and .npz
# (examples for the reconstruction grid). Reads the backbone, the decoded data and the runs' final head state.


rule privacy_attack:
    input:
        unpack(WF.privacy_input),
    output:
        csv=f"{R}/privacy/{{backbone}}_{{split}}.csv",
        npz=f"{R}/privacy/{{backbone}}_{{split}}.npz",
    log:
        f"{R}/logs/privacy/{{backbone}}_{{split}}.log",
    benchmark:
        f"{R}/logs/privacy/{{backbone}}_{{split}}.benchmark.tsv",
    params:
        spec=WF.privacy_spec,
        out=lambda wildcards, output: output.csv[: -len(".csv")],
    # as soon as the runs it attacks are done (scheduling only); those runs go first among the training jobs
    # (the train rule's priority), so the job overlaps the rest of the training instead of running last
    priority: 10
    threads: RES["privacy"]["threads"]
    resources:
        cpus=WF.cpus,
        mem_mb=RES["privacy"]["mem_mb"],
        runtime=RES["privacy"]["runtime"],
        gpu=RES["privacy"]["gpu"],
    conda:
        ENV
    shell:
        "python -m benchmark privacy --spec {params.spec:q} --threads {threads} --out {params.out:q} > {log} 2>&1"


rule privacy:
    input:
        WF.privacy_targets(),
