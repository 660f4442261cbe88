#!/usr/bin/env bash
# Install this project's packages from your company's package index (a mirror of PyPI), for this project only.
#
#     scripts/set_internal_pypi_index.sh https://USER:TOKEN@pypi.example.com/simple
#     make venv          # and `make lock`: both read the index from .pip/pip.conf
#
# The URL (credentials included) goes to .pip/pip.conf, which git ignores and only you can read; nothing is
# written into a tracked file, and no other project or user pip setting changes.
# scripts/unset_internal_pypi_index.sh goes back to pip's own settings.
set -euo pipefail
if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 INDEX_URL   (e.g. https://pypi.example.com/simple or file:///path/to/simple)" >&2
  exit 2
fi
case "$1" in
  http://*|https://*|file://*) ;;
  *) echo "error: $1 is not an index URL (http://, https:// or file://)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
mkdir -p .pip
umask 077
printf '[global]\nindex-url = %s\n' "$1" > .pip/pip.conf.partial
mv .pip/pip.conf.partial .pip/pip.conf
echo "make venv and make lock now install from the index in .pip/pip.conf (not tracked by git)"
