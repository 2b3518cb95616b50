#!/usr/bin/env bash
# The test command: install what is missing, start Apache Kafka and a ClickHouse server on
# 127.0.0.1, run pytest, and stop the services again even when tests fail.
#   scripts/test.sh                 all tests
#   scripts/test.sh tests/streams   pytest arguments are passed through
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
stop_services() { .venv/bin/python scripts/services.py stop || true; }
trap stop_services EXIT
.venv/bin/python scripts/services.py start
export CITYBRAIN_TEST_SERVICES=1
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "[test] pytest collected no tests: failing"; rc=1; fi
exit "$rc"
