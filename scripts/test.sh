#!/usr/bin/env bash
# The test command: sets up if needed (scripts/setup.sh), then runs the whole pytest suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k geometry -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
exec python -m pytest test -ra "$@"
