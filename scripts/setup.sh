#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine; safe to run again (each step
# is skipped when already done):
#   - Debian's `zookeeper` package, for zkCli.sh (tests/zkcli_smoke.sh) and comparison runs;
#   - Apache Curator (libcurator-{client,framework,recipes}-java) and a JDK (javac), for the
#     Curator recipe suite (tests/curator_suite.sh);
#   - .venv with kazoo and pytest (tests/python);
#   - reports whether cargo-nextest is there (scripts/test.sh falls back to `cargo test`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KAZOO_VERSION=2.10.0
PYTEST_VERSION=8.3.5
ZKCLI=/usr/share/zookeeper/bin/zkCli.sh

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "setup: need root (or sudo) for: $*" >&2; return 1
  fi
}

apt_updated=""
apt_install() {
  if [[ -z "$apt_updated" ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if [[ -x "$ZKCLI" ]] && command -v java >/dev/null; then
  echo "setup: zkCli.sh present"
else
  echo "setup: installing zookeeper (zkCli.sh)"
  apt_install zookeeper
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for package in libcurator-client-java libcurator-framework-java libcurator-recipes-java; do
  installed "$package" || missing+=("$package")
done
if [[ ${#missing[@]} == 0 ]]; then
  echo "setup: Apache Curator present"
else
  echo "setup: installing Apache Curator (${missing[*]})"
  apt_install "${missing[@]}"
fi
if command -v javac >/dev/null; then
  echo "setup: javac present"
else
  echo "setup: installing a JDK (javac, for tests/curator_suite.sh)"
  apt_install default-jdk-headless
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "setup: installing python3-venv"
  apt_install python3-venv
fi
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  rm -rf .venv
  python3 -m venv .venv
fi
if .venv/bin/python - "$KAZOO_VERSION" "$PYTEST_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert version("kazoo") == sys.argv[1] and version("pytest") == sys.argv[2]
PY
then
  echo "setup: kazoo $KAZOO_VERSION and pytest $PYTEST_VERSION present in .venv"
else
  echo "setup: installing kazoo $KAZOO_VERSION and pytest $PYTEST_VERSION into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check "kazoo==$KAZOO_VERSION" "pytest==$PYTEST_VERSION"
fi

if cargo nextest --version >/dev/null 2>&1; then
  echo "setup: cargo-nextest present"
else
  echo "setup: cargo-nextest missing: scripts/test.sh will use cargo test"
fi
echo "setup: done"
