#!/usr/bin/env bash
# The bad-input catalogue (docs/safety.md): builds malformed inputs and faults for every command from the
# bundled tiny checkpoints and checks the error contract on each. Usage: run.sh [BINARY] [catalogue options].
# BINARY defaults to $G4CONVERT, then build/g4convert.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-${G4CONVERT:-$here/../../build/g4convert}}
[ $# -gt 0 ] && shift
exec python3 "$here/catalogue.py" "$binary" "$@"
