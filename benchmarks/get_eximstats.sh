#!/bin/sh
# eximstats without installing Exim (exim4-base would pull in an MTA next to Postfix):
# download Debian's exim4-base .deb and unpack it under benchmarks/data/peers/ (gitignored).
# scan_vs_peers.py finds benchmarks/data/peers/usr/sbin/eximstats when eximstats is not on PATH.
set -eu
cd "$(dirname "$0")"
mkdir -p data/peers
cd data/peers
rm -f exim4-base_*.deb
apt-get download exim4-base
dpkg-deb -x exim4-base_*.deb .
./usr/sbin/eximstats -v 2>/dev/null | head -1 || true
echo "eximstats: $(pwd)/usr/sbin/eximstats"
