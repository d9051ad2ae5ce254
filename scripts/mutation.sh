#!/usr/bin/env bash
# Mutation testing of the method, aggregation, accounting and statistics code (issue 24; docs/testing.md).
#
#   bash scripts/mutation.sh                 # run (or resume) every mutant, then print the score and the survivors
#   bash scripts/mutation.sh NAME...         # re-run the named mutants only (e.g. after adding a test)
#   bash scripts/mutation.sh --report        # print the score and the survivors of the last run, run nothing
#
# mutmut (the `mutation` extra, pinned in pyproject.toml; configured in its [tool.mutmut] section) copies the
# packages to mutants/ (git-ignored), mutates only benchmark/sfprompt.py, baselines/, benchmark/federation/,
# benchmark/accounting/ and benchmark/report/stats.py, runs the test selection once to learn which test reaches
# which function, then forks one worker per mutant (torch is imported once) that runs only the tests reaching the
# mutated function, stopping at the first failure. Results are kept in mutants/: an interrupted run resumes where
# it stopped. MUTATION_CHILDREN workers run at once (default 2: the run fits 60 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
command -v mutmut >/dev/null || { echo "mutation.sh: mutmut is not installed (pip install -e '.[mutation]')" >&2; exit 2; }

if [[ "${1:-}" != "--report" ]]; then
  mutmut run --max-children "${MUTATION_CHILDREN:-2}" "$@"
fi
mutmut export-cicd-stats >/dev/null
python - <<'PY'
import json

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
PY
echo "survivors and untested (mutmut show NAME prints the diff):"
mutmut results | grep -v ": killed$" || true
