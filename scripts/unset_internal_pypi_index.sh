#!/usr/bin/env bash
# Undo scripts/set_internal_pypi_index.sh: make venv and make lock use pip's own settings again.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f .pip/pip.conf
rmdir .pip 2>/dev/null || true
echo "make venv and make lock now use pip's own index settings"
