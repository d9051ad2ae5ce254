#!/usr/bin/env bash
# Run a command inside the project's virtual environment, creating or updating it first.
#
#   bash scripts/env.sh snakemake --cores 2 all     # the main job (config/default.yaml)
#   bash scripts/env.sh pytest                      # the tests
#
# Idempotent: the venv (.venv, or $SFB_VENV) is (re)installed only when pyproject.toml changed since the
# last install. If BENCHMARK_DATA_ROOT is unset and a sibling ../shared/data mirror exists, it is used.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SFB_VENV:-$root/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
stamp="$venv/.sfb-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "sfprompt-bench: installing the environment into $venv (first run: a few minutes)" >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  # test: the test tools; docs: the manual (mkdocs); cluster: the SLURM executor plugin (profiles/slurm,
  # tests/test_cluster.py)
  "$venv/bin/python" -m pip install --quiet -e "$root[test,docs,cluster]" >&2
  echo "$want" > "$stamp"
fi
if [ -z "${BENCHMARK_DATA_ROOT:-}" ] && [ -d "$root/../shared/data" ]; then
  export BENCHMARK_DATA_ROOT="$(cd "$root/../shared/data" && pwd)"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
exec "$@"
