#!/usr/bin/env bash
# Build dist/logscan_<version>_<arch>.deb with plain dpkg-deb (docs/decisions/0009-debian-package.md):
# a venv made by Debian's own python3.X under /usr/lib/logscan, the C scanner compiled into it,
# /usr/bin/logscan, the systemd unit, sysusers.d and tmpfiles.d snippets, the config as a
# conffile, the Prometheus rules under /usr/share/logscan, maintainer scripts in packaging/deb/.
#
#   scripts/build-deb.sh            (make deb: runs ./scripts/setup.sh first)
#
# Needs: Debian's python3 with its headers (python3-dev), gcc, dpkg-dev, and a pip to install
# with: the project's .venv (make setup), or PIP="python3 -m pip". Dependencies come from
# pip's cache after the first build. Writes only build/deb/ and dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export LC_ALL=C.UTF-8

DEB_PYTHON=${DEB_PYTHON:-/usr/bin/python3}   # Debian's, never pyenv's: the venv links to it
PIP=${PIP:-$REPO/.venv/bin/python -m pip}
# The interpreter by its minor version: the venv needs exactly this one, and the package
# depends on exactly it (a venv does not survive a change of minor version).
PY_MINOR=$("$DEB_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYTHON=/usr/bin/python$PY_MINOR
[ -x "$PYTHON" ] || { echo "build-deb: $PYTHON not found (Debian's python3 package)" >&2; exit 1; }
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  || { echo "build-deb: no Python.h for $PYTHON: apt-get install python3-dev" >&2; exit 1; }

VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
CHANGELOG_VERSION=$(sed -n '1s/^logscan (\([^)]*\)).*/\1/p' packaging/deb/changelog)
if [ "$VERSION" != "$CHANGELOG_VERSION" ]; then
  echo "build-deb: pyproject.toml says $VERSION, packaging/deb/changelog $CHANGELOG_VERSION: add a changelog entry" >&2
  exit 1
fi
ARCH=$(dpkg --print-architecture)
# Reproducible: every file's time is the last commit's (or the changelog's), not the build's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date -r packaging/deb/changelog +%s)}
export SOURCE_DATE_EPOCH

WORK=$REPO/build/deb
ROOT=$WORK/root
PREFIX=/usr/lib/logscan
VENV=$ROOT$PREFIX
rm -rf "$WORK"
mkdir -p "$WORK/src" "$ROOT" dist

# --- the venv -------------------------------------------------------------------------------
# A copy of just what the wheel is built from, so that the build leaves the checkout alone.
cp -r logscan pyproject.toml setup.py README.md "$WORK/src/"
find "$WORK/src" -depth \( -name __pycache__ -exec rm -rf {} + \) -o \( -name '*.so' -exec rm -f {} + \)
"$PYTHON" -m venv --without-pip "$VENV"
# This pip installs into the new venv (--python), so the venv needs no pip of its own; the
# C scanner is compiled against $PYTHON's headers in pip's build environment, with Debian's
# hardening flags (fortify, stack protector, full RELRO, bind now).
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
CFLAGS=$(dpkg-buildflags --get CFLAGS) CPPFLAGS=$(dpkg-buildflags --get CPPFLAGS) \
LDFLAGS=$(dpkg-buildflags --get LDFLAGS) \
$PIP --python "$VENV/bin/python" install --quiet --disable-pip-version-check --no-compile \
  --no-warn-script-location "$WORK/src"
"$VENV/bin/python" -c 'from logscan.parsers import C_SCANNERS, scan_paths; assert all(scan_paths()[f] == "C" for f in C_SCANNERS)' \
  || { echo "build-deb: a C scanner did not build" >&2; exit 1; }

# Relocate: from $VENV to $PREFIX. Only the console script, pyvenv.cfg and the activate
# scripts name the venv's path; the activate scripts and the dependencies' own console
# scripts (tqdm, watchmedo, ...) are not needed by a service.
rm -rf "$VENV/include"   # for headers of packages built into the venv: empty
find "$VENV/bin" -mindepth 1 -maxdepth 1 ! -name logscan ! -name 'python*' -exec rm -f {} +
sed -i "1s|^#!$VENV/bin/python.*|#!$PREFIX/bin/python|" "$VENV/bin/logscan"
sed -i "s|$VENV|$PREFIX|g" "$VENV/pyvenv.cfg"
find "$VENV" -depth \( -name __pycache__ -exec rm -rf {} + \) -o \( -name '*.pyc' -exec rm -f {} + \)
rm -f "$VENV"/lib/python*/site-packages/logscan-*.dist-info/direct_url.json
# Debian policy, as lintian checks it:
# - no embedded copy of a Debian library: PyYAML's wheel links libyaml in statically. Without
#   its C module PyYAML is pure Python (yaml.safe_load, all logscan uses, for the web config);
# - relative symlinks, no shell script that is not executable, no shebang in a module;
# - stripped shared objects.
rm -f "$VENV"/lib/python*/site-packages/yaml/_yaml*.so "$VENV"/lib/python*/site-packages/tqdm/completion.sh
{ find "$VENV/lib" -name '*.py' ! -perm -u+x -exec grep -l '^#!' {} + || true; } | xargs -r sed -i '1s/^#!.*//'
find "$VENV" -name '*.so' -exec strip --strip-unneeded --remove-section=.comment --remove-section=.note {} +
if grep -rlI --exclude-dir=__pycache__ "$WORK" "$VENV" >/dev/null; then
  echo "build-deb: the build path is left in:" >&2; grep -rlI "$WORK" "$VENV" >&2; exit 1
fi

# --- the rest of the tree -------------------------------------------------------------------
install -d "$ROOT/usr/bin" "$ROOT/lib/systemd/system" "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/tmpfiles.d" \
  "$ROOT/etc/logscan" "$ROOT/usr/share/logscan" "$ROOT/usr/share/doc/logscan/examples"
ln -s ../lib/logscan/bin/logscan "$ROOT/usr/bin/logscan"
# The unit as in systemd/, but for /usr/bin/logscan and without the copy-by-hand instructions.
sed -e 's|^ExecStart=/usr/local/bin/logscan |ExecStart=/usr/bin/logscan |' \
    -e '/^# Install:$/,/^#$/d' systemd/logscan.service >"$ROOT/lib/systemd/system/logscan.service"
grep -qx 'ExecStart=/usr/bin/logscan run --config /etc/logscan/logscan.toml' "$ROOT/lib/systemd/system/logscan.service" \
  || { echo "build-deb: ExecStart of systemd/logscan.service changed: update this script" >&2; exit 1; }
install -m 0644 systemd/logscan.sysusers.conf "$ROOT/usr/lib/sysusers.d/logscan.conf"
install -m 0644 systemd/logscan.tmpfiles.conf "$ROOT/usr/lib/tmpfiles.d/logscan.conf"
install -m 0644 config/logscan.toml "$ROOT/etc/logscan/logscan.toml"
cp -r config/prometheus "$ROOT/usr/share/logscan/prometheus"
install -m 0644 config/web-config.example.yml config/alertmanager/alertmanager.yml "$ROOT/usr/share/doc/logscan/examples/"
install -m 0644 README.md "$ROOT/usr/share/doc/logscan/README.md"   # the unit's Documentation=
gzip -9n <packaging/deb/changelog >"$ROOT/usr/share/doc/logscan/changelog.gz"
install -d "$ROOT/usr/share/man/man1"
gzip -9n <packaging/deb/logscan.1 >"$ROOT/usr/share/man/man1/logscan.1.gz"

# copyright: logscan's, then every Python distribution in the venv with its licence.
{
  cat <<'EOF'
logscan: mail-log analyzer daemon.

Copyright (C) 2026 the logscan developers
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

The Python distributions bundled in /usr/lib/logscan (name, version, licence from their
metadata; each distribution's own licence text is in its *.dist-info folder):

EOF
  "$VENV/bin/python" -I - <<'EOF'
from importlib import metadata

for dist in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower()):
    meta = dist.metadata
    licence = meta.get("License-Expression") or ""
    if not licence and meta.get("License") and len(meta["License"]) < 80 and "\n" not in meta["License"]:
        licence = meta["License"]
    if not licence:
        classifiers = meta.get_all("Classifier") or []
        licence = ", ".join(c.split(" :: ")[-1] for c in classifiers if c.startswith("License ::"))
    print(f" {meta['Name']} {dist.version}: {licence or 'see its dist-info folder'}")
EOF
} >"$ROOT/usr/share/doc/logscan/copyright"

# Relative, as lintian asks (/usr/lib/logscan/bin -> /usr/bin); from here on the staged venv
# no longer runs: its interpreter link points into the staging tree.
ln -sfn "../../../bin/python$PY_MINOR" "$VENV/bin/python$PY_MINOR"

# Modes as dh_fixperms leaves them.
find "$ROOT" -type d -exec chmod 0755 {} +
find "$ROOT" -type f -exec chmod 0644 {} +
chmod 0755 "$VENV/bin/logscan"
find "$VENV" -name '*.so' -exec chmod 0644 {} +

# --- DEBIAN/ --------------------------------------------------------------------------------
install -d -m 0755 "$ROOT/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$ROOT/DEBIAN/"
echo /etc/logscan/logscan.toml >"$ROOT/DEBIAN/conffiles"
# Shared libraries the compiled modules need (libc for the C scanner, ...), as dpkg-shlibdeps
# finds them; the wheels' own bundled libraries are in the venv and need nothing.
mkdir -p "$WORK/shlibs/debian"
printf 'Source: logscan\n\nPackage: logscan\nArchitecture: any\n' >"$WORK/shlibs/debian/control"
mapfile -t objects < <(find "$VENV" -name '*.so' | sort)
SHLIBS=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O --warnings=0 -l"$VENV" "${objects[@]/#/-e}" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
DEPENDS="python$PY_MINOR, ${SHLIBS:+$SHLIBS, }systemd | systemd-standalone-sysusers | systemd-sysusers, init-system-helpers (>= 1.54~)"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s/@SIZE@/$SIZE/" -e "s/@DEPENDS@/$DEPENDS/" \
  packaging/deb/control.in >"$ROOT/DEBIAN/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

DEB=dist/logscan_${VERSION}_${ARCH}.deb
rm -f dist/logscan_*.deb
dpkg-deb --root-owner-group -Zxz -z6 --build "$ROOT" "$DEB" >/dev/null
echo "$DEB $(du -k "$DEB" | cut -f1) KiB, installed $SIZE KiB"
