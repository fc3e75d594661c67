#!/usr/bin/env bash
# The one way this project's Python environment is installed, by `make venv` and by the Dockerfile:
# a virtual environment at VENV holding the project (editable) with EXTRAS, every package at its
# pin in requirements.lock (`make lock` regenerates that file from pyproject.toml).
#
#   deploy/install-env.sh VENV [EXTRAS]      e.g. deploy/install-env.sh .venv test,postgres
#   PYTHON=/usr/bin/python3.11 deploy/install-env.sh /opt/venv postgres
set -euo pipefail

venv=${1:?usage: deploy/install-env.sh VENV [EXTRAS]}
extras=${2:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock=$root/requirements.lock
python=${PYTHON:-$(command -v python3.11 || command -v python3)}

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "$0: requirements.lock is resolved for Python 3.11 (pyproject.toml); $python is $("$python" -V 2>&1)" >&2
    exit 1
fi
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --quiet)
"${pip[@]}" install --constraint "$lock" --upgrade pip
"${pip[@]}" install --constraint "$lock" --editable "$root${extras:+[$extras]}"

# The Spark provider depends on pyspark-client, which ships pyspark's Python files at another
# release and overwrites those of pyspark; reinstalling pyspark last puts the matching files back.
pyspark=$(sed -n 's/^pyspark==//p' "$lock")
"${pip[@]}" install --force-reinstall --no-deps "pyspark==$pyspark"
"$venv/bin/python" -c "import pyspark, sys; sys.exit(pyspark.__version__ != '$pyspark')"
