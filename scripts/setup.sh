#!/usr/bin/env bash
# Set up cardrenew on Debian 12: system packages (as root; otherwise prints the apt-get line),
# then the project's virtual environment in .venv with the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(pcscd vsmartcard-vpcd swig libpcsclite-dev opensc pcsc-tools yubico-piv-tool scep iproute2 openssl python3-venv python3-dev gcc pkg-config chromium softhsm2 ykcs11 rsyslog)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
  else
    echo "These system packages are missing. Install them as root, then run this script again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "Set up: .venv/bin/cardrenew is ready (try: .venv/bin/cardrenew --demo)."
