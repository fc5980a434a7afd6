#!/usr/bin/env bash
# Everything logscan's tests and demo need on a fresh Debian 12 machine with Python 3.11.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for bin_pkg in logrotate:logrotate promtool:prometheus prometheus-alertmanager:prometheus-alertmanager \
               amtool:prometheus-alertmanager systemd-analyze:systemd openssl:openssl \
               postfix:postfix smbd:samba; do
  command -v "${bin_pkg%%:*}" >/dev/null 2>&1 || need_apt+=("${bin_pkg##*:}")
done
# The journal source's tests write real journal files with systemd-journal-remote (not on PATH).
[ -x /lib/systemd/systemd-journal-remote ] || [ -x /usr/lib/systemd/systemd-journal-remote ] \
  || need_apt+=(systemd-journal-remote)
# The C scanner (logscan/parsers/_postfix_scan.c) is compiled by pip: a compiler, libasan for its
# sanitizer test, and the headers of the Python that builds the venv.
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  || need_apt+=(python3-dev)
# `make deb` (scripts/build-deb.sh, tests/test_deb.py): the package's venv is made by Debian's
# python3 (not the first python3 on PATH, which may be pyenv's), compiled against its headers;
# dpkg-shlibdeps and dpkg-buildflags from dpkg-dev; lintian checks the result.
/usr/bin/python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' 2>/dev/null \
  || need_apt+=(python3-dev)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_apt+=(dpkg-dev)
command -v lintian >/dev/null 2>&1 || need_apt+=(lintian)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d keeps Debian from starting system-wide Prometheus/Alertmanager services:
  # the tests start their own, on free loopback ports.
  if [ -d /usr/sbin ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  # Postfix is only used by the tailer's `postfix logrotate` test: no mail configuration.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Exim for tests/test_queue.py (issue 17): exim4-daemon-light conflicts with postfix as a package,
# so its Debian 12 .debs (and libidn12, which a postfix host lacks) are unpacked into build/exim4/.
if [ ! -x build/exim4/root/usr/sbin/exim4 ]; then
  rm -rf build/exim4 && mkdir -p build/exim4/debs
  if (cd build/exim4/debs && apt-get download -qq exim4-daemon-light exim4-base exim4-config libidn12); then
    for deb in build/exim4/debs/*.deb; do dpkg-deb -x "$deb" build/exim4/root; done
  else
    echo "setup: could not download the exim4 .debs: tests/test_queue.py's Exim test will fail" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
