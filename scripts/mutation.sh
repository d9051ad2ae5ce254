#!/usr/bin/env bash
# Mutation testing of the method, aggregation, accounting and statistics code (issue 24; docs/testing.md).
#
#   bash scripts/mutation.sh                 # run (or resume) every mutant, then print the score and the survivors
#   bash scripts/mutation.sh --sample N      # run a seeded uniform sample of N mutants: an unbiased estimate of
#                                            # the score, with its 95% interval, in a fraction of the time
#   bash scripts/mutation.sh NAME...         # re-run the named mutants only (globs allowed, e.g. after a new test)
#   bash scripts/mutation.sh --report        # print the score and the survivors of the last run, run nothing
#
# mutmut (the `mutation` extra, pinned in pyproject.toml; configured in its [tool.mutmut] section) copies the
# packages to mutants/ (git-ignored), mutates only benchmark/sfprompt.py, baselines/, benchmark/federation/,
# benchmark/accounting/, benchmark/analytic.py and benchmark/stats.py, runs the test selection once to learn which test reaches
# which function, then forks one worker per mutant (torch is imported once) that runs only the tests reaching the
# mutated function, fastest first, stopping at the first failure. Results are kept in mutants/: an interrupted run
# resumes where it stopped. MUTATION_CHILDREN workers run at once (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
die() { echo "mutation.sh: $*" >&2; exit 2; }
command -v mutmut >/dev/null || die "mutmut is not installed (pip install -e '.[mutation]')"
run() { mutmut run --max-children "${MUTATION_CHILDREN:-2}" "$@"; }

case "${1:-}" in
  --report) ;;
  --sample)
    [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--sample needs a positive count, got '${2:-}'"
    if ! find mutants -name '*.py.meta' 2>/dev/null | grep -q .; then
      # mutmut has no generate-only command: a filter that matches nothing generates the mutants and the test
      # map, then stops
      run "generate-only" >/dev/null 2>&1 || true
    fi
    python - "$2" <<'PY'
import json, random, sys
from pathlib import Path

names = sorted(k for f in Path("mutants").rglob("*.py.meta") for k in json.loads(f.read_text())["exit_code_by_key"])
sample = sorted(random.Random(24).sample(names, min(int(sys.argv[1]), len(names))))
Path("mutants/sample.txt").write_text("\n".join(sample) + "\n")
print(f"sample: {len(sample)} of {len(names)} mutants (seed 24) -> mutants/sample.txt")
PY
    mapfile -t todo < <(python - <<'PY'
import json
from pathlib import Path

# not run yet, or reached by no test when it ran (a test added since may reach it now)
done = {k for f in Path("mutants").rglob("*.py.meta") for k, v in json.loads(f.read_text())["exit_code_by_key"].items()
        if v is not None and v != 33}
print("\n".join(n for n in Path("mutants/sample.txt").read_text().split() if n not in done))
PY
)
    if ((${#todo[@]})); then run "${todo[@]}"; fi ;;
  *) run "$@" ;;
esac

mutmut export-cicd-stats >/dev/null
python - <<'PY'
import json
from pathlib import Path

from mutmut.stats import status_by_exit_code
from scipy.stats import binomtest

s = json.load(open("mutants/mutmut-cicd-stats.json"))
# a mutant no selected test reaches counts as a survivor: nothing would notice it
tested = s["killed"] + s["survived"] + s["timeout"] + s["suspicious"] + s["segfault"] + s["no_tests"]
caught = s["killed"] + s["timeout"] + s["suspicious"] + s["segfault"]
print(f"mutants: {s['total']} generated, {tested} run ({s['no_tests']} of them reached by no selected test), "
      f"{s['skipped']} skipped, {s['total'] - tested - s['skipped']} not run yet")
print(f"caught: {s['killed']} killed + {s['timeout']} timed out + {s['suspicious']} suspicious + {s['segfault']} "
      f"crashed; survived: {s['survived']} + {s['no_tests']} unreached")
if tested:
    print(f"mutation score: {caught}/{tested} = {100 * caught / tested:.1f}% of the mutants run")
sample = Path("mutants/sample.txt")
if sample.exists():
    codes = {k: v for f in Path("mutants").rglob("*.py.meta")
             for k, v in json.loads(f.read_text())["exit_code_by_key"].items()}
    names = sample.read_text().split()
    status = [status_by_exit_code[codes.get(n)] for n in names]
    ran = [x for x in status if x not in ("not checked", "skipped", "check was interrupted by user")]
    hit = sum(x in ("killed", "timeout", "suspicious", "segfault", "caught by type check") for x in ran)
    if ran:
        ci = binomtest(hit, len(ran)).proportion_ci(0.95, method="wilson")
        print(f"sample score: {hit}/{len(ran)} = {100 * hit / len(ran):.1f}% (95% Wilson interval "
              f"{100 * ci.low:.1f}-{100 * ci.high:.1f}%) of {len(names)} sampled mutants, {len(names) - len(ran)} "
              f"not run")
PY
echo "survivors and unreached (mutmut show NAME prints the diff):"
mutmut results | grep -v ": killed$" | grep -v ": not checked$" || true
