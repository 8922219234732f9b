#!/usr/bin/env bash
# Builds the release binaries and writes dist/:
#   airlock-<version>-linux-x86_64.tar.gz  the portable folder, made by `airlock kit portable` from
#                                          the built binaries and libraries (the same code that
#                                          puts Airlock itself into a transfer kit)
#   airlock_<version>_amd64.deb            the same files under /usr, Depends from dpkg-shlibdeps
#                                          (every package is in Debian 12's own archive), and the
#                                          airlock service (packaging/: unit, settings, its user)
#   SHA256SUMS (+ SHA256SUMS.minisig with --sign KEY, the same minisign keys as bundles)
# Usage: scripts/package.sh [--sign KEY] [--no-build]   (--no-build: package what scripts/test.sh built)
set -euo pipefail
cd "$(dirname "$0")/.."

sign=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sign) sign="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: scripts/package.sh [--sign KEY] [--no-build]" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ]; then
  scripts/deps.sh
  scripts/ui.sh
fi
source scripts/build-env.sh
if [ "$build" = 1 ]; then
  clear_dangling
  build_app
fi
bin="$target/release"
version="$("$bin/airlock" --version | head -1 | awk '{print $2}')"
arch="$(dpkg --print-architecture)"

rm -rf dist
mkdir -p dist
"$bin/airlock" kit portable --out dist
tarball="dist/airlock-$version-linux-x86_64.tar.gz"
[ -f "$tarball" ] || { echo "package: $tarball was not written" >&2; exit 1; }

# The .deb: the portable folder's files, laid out under /usr.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar xzf "$tarball" -C "$work"
top="$work/airlock-$version"
root="$work/root"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/airlock" "$root/usr/share/doc/airlock"
cp -a "$top/bin/." "$root/usr/bin/"
cp -a "$top/lib/airlock/." "$root/usr/lib/airlock/"
cp -a "$top/share/." "$root/usr/share/"
cp "$top/README.txt" "$root/usr/share/doc/airlock/README.txt"
printf 'Airlock\nLicense: MIT\n' > "$root/usr/share/doc/airlock/copyright"
# The service: `airlock serve` as the system user airlock, installed but not enabled.
install -D -m 0644 packaging/airlock.service "$root/lib/systemd/system/airlock.service"
install -D -m 0644 packaging/airlock.default "$root/etc/default/airlock"
install -D -m 0644 packaging/haproxy.cfg "$root/usr/share/doc/airlock/examples/haproxy.cfg"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$root/DEBIAN/"
echo /etc/default/airlock > "$root/DEBIAN/conffiles"

# Depends: what the binaries and every library module link, as Debian packages.
mkdir -p "$work/shlibs/debian"
printf 'Source: airlock\n\nPackage: airlock\nArchitecture: any\n' > "$work/shlibs/debian/control"
depends="$(cd "$work/shlibs" && dpkg-shlibdeps -O --ignore-missing-info -l"$root/usr/lib/airlock" \
  "$root/usr/bin/airlock" "$root/usr/bin/airlock-desktop" "$root"/usr/lib/airlock/*.so 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')"
[ -n "$depends" ] || { echo "package: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# Only the GPU modules need the Vulkan loader, and they load only where it is: recommend it.
recommends="$(tr ',' '\n' <<<"$depends" | sed 's/^ *//' | grep '^libvulkan1' | paste -sd, - || true)"
depends="$(tr ',' '\n' <<<"$depends" | sed 's/^ *//' | grep -v '^libvulkan1' | paste -sd, - | sed 's/,/, /g'), adduser"

cat > "$root/DEBIAN/control" <<EOF
Package: airlock
Version: $version
Architecture: $arch
Maintainer: Airlock developers <airlock@localhost>
Installed-Size: $(du -sk "$root/usr" "$root/lib" "$root/etc" | awk '{s+=$1} END {print s}')
Depends: $depends
Recommends: ${recommends:-libvulkan1}
Section: utils
Priority: optional
Description: run local LLMs on machines with no network
 Airlock carries models across an air gap in verified bundles, keeps them in an
 Ollama-compatible store, and runs them in a desktop app (airlock-desktop), in
 the terminal (airlock run) and behind an Ollama- and OpenAI-compatible API
 (airlock serve). It makes no network request.
EOF
deb="dist/airlock_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null

(cd dist && sha256sum -- *.deb *.tar.gz > SHA256SUMS)
if [ -n "$sign" ]; then
  "$bin/airlock" sign dist/SHA256SUMS --key "$sign"
fi
ls -l dist
