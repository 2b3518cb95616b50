#!/usr/bin/env bash
# The run command: install what is missing, then `citybrain up` (embedded broker and store,
# simulator, worker, dashboard). Ctrl-C stops everything. Arguments go to `citybrain up`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/citybrain up "$@"
