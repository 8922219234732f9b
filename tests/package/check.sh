#!/usr/bin/env bash
# Checks the packages scripts/package.sh wrote into dist/, as a person on the far side uses them:
# the .deb's metadata and contents; then installs it for real with apt-get (Depends must resolve
# from Debian's archive), runs the installed CLI (--version, hardware, import, run) on the test
# model, opens the installed app's window (needs an X display: run under scripts/with-display.sh),
# checks the airlock service (systemd-analyze verify and security, its user, a drained stop as
# that user), and purges the package again. Needs root (or sudo) and AIRLOCK_TEST_MODEL.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${AIRLOCK_TEST_MODEL:?AIRLOCK_TEST_MODEL must name the test model (tests/fixtures/fetch-test-model.sh)}"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
fail() { echo "package check FAILED: $*" >&2; exit 1; }

deb="$(ls dist/airlock_*.deb)"
tarball="$(ls dist/airlock-*-linux-x86_64.tar.gz)"
(cd dist && sha256sum -c --quiet SHA256SUMS) || fail "dist/SHA256SUMS does not match"

# ---- Metadata and contents.
info="$(dpkg-deb -I "$deb")"
depends="$(dpkg-deb -f "$deb" Depends)"
echo "Depends: $depends"
for need in libc6 libwebkit2gtk-4.1-0 libgtk-3-0; do
  grep -q "$need" <<<"$depends" || fail "Depends lacks $need"
done
# The GPU module's loader is recommended, not required: without it the package runs on the CPU.
grep -q libvulkan1 <<<"$depends" && fail "libvulkan1 must not be a hard dependency"
grep -q libvulkan1 <<<"$(dpkg-deb -f "$deb" Recommends)" || fail "Recommends lacks libvulkan1"
grep -q '^ Package: airlock$' <<<"$info" || fail "the package is not named airlock"
contents="$(dpkg-deb -c "$deb" | awk '{print $6}')"
for f in ./usr/bin/airlock ./usr/bin/airlock-desktop ./usr/share/applications/airlock.desktop \
         ./usr/lib/airlock/libllama.so ./usr/lib/airlock/libggml.so ./usr/lib/airlock/libggml-base.so \
         ./usr/lib/airlock/libggml-rpc.so; do
  grep -qxF "$f" <<<"$contents" || fail "$f is missing from the .deb"
done
cpu_modules="$(grep -c '^./usr/lib/airlock/libggml-cpu-.*\.so$' <<<"$contents" || true)"
[ "$cpu_modules" -ge 2 ] || fail "the .deb holds $cpu_modules CPU-variant modules"
for size in 16 24 32 48 64 128 256 512; do
  grep -qxF "./usr/share/icons/hicolor/${size}x${size}/apps/airlock.png" <<<"$contents" || fail "no ${size}x${size} icon"
done
grep -q '/bin/airlock$' <<<"$(tar tzf "$tarball")" || fail "the tarball has no bin/airlock"
for f in ./lib/systemd/system/airlock.service ./etc/default/airlock ./usr/share/doc/airlock/examples/haproxy.cfg; do
  grep -qxF "$f" <<<"$contents" || fail "$f is missing from the .deb"
done
grep -q adduser <<<"$depends" || fail "Depends lacks adduser (postinst makes the service's user)"

# ---- Install for real; remove again whatever happens.
cleanup() { $sudo apt-get purge -y -qq airlock >/dev/null 2>&1 || true; rm -rf "$work"; }
work="$(mktemp -d)"
trap cleanup EXIT
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null
# The CLI needs no GUI library: a headless server installs the same binary.
if readelf -d /usr/bin/airlock | grep NEEDED | grep -Eq 'gtk|webkit|soup'; then fail "/usr/bin/airlock links GTK/WebKit"; fi
version="$(/usr/bin/airlock --version)"
echo "$version"
grep -q "CPU variants: .*[a-z]" <<<"$version" || fail "--version lists no CPU variants"
grep -q "/usr/lib/airlock" <<<"$version" || fail "the installed binary does not use /usr/lib/airlock"
export HOME="$work/home" AIRLOCK_MODELS="$work/store" AIRLOCK_CONFIG="$work/config" AIRLOCK_THREADS=2
mkdir -p "$HOME"
/usr/bin/airlock hardware | tee "$work/hardware.txt"
grep -q "gemma" "$work/hardware.txt" && fail "an empty store lists a model"
/usr/bin/airlock import "$AIRLOCK_TEST_MODEL" --name gemma3:270m
/usr/bin/airlock list | grep -q gemma3:270m || fail "the import is not listed"
# A base model writes until its context is full: read the first 200 bytes, then let it go.
answer="$(timeout 300 /usr/bin/airlock run gemma3:270m "The capital of France is" </dev/null 2>/dev/null | head -c 200 || true)"
echo "airlock run: $answer"
[ -n "$(tr -d '[:space:]' <<<"$answer")" ] || fail "airlock run answered nothing"

# The installed app opens its window (no GTK/WebKit loader error), then is closed.
if [ -n "${DISPLAY:-}" ]; then
  /usr/bin/airlock-desktop >"$work/desktop.log" 2>&1 &
  app=$!
  for _ in $(seq 300); do
    xdotool search --onlyvisible --pid "$app" >/dev/null 2>&1 && break
    kill -0 "$app" 2>/dev/null || { cat "$work/desktop.log" >&2; fail "the installed airlock-desktop exited"; }
    sleep 0.1
  done
  xdotool search --onlyvisible --pid "$app" >/dev/null 2>&1 || fail "the installed airlock-desktop opened no window"
  echo "installed airlock-desktop opened its window"
  kill "$app"; wait "$app" 2>/dev/null || true
else
  echo "no DISPLAY: the installed app's window was not checked" >&2
fi
# ---- The service: installed, not enabled, sandboxed, and it drains on SIGTERM as its own user.
unit=/lib/systemd/system/airlock.service
systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
security="$(systemd-analyze security --offline=true "$unit" 2>&1 | grep 'Overall exposure level')" || fail "systemd-analyze security printed no score"
echo "$security"
score="$(sed -n 's/.*: \([0-9.]*\) .*/\1/p' <<<"$security")"
awk -v s="$score" 'BEGIN { exit !(s <= 2.5) }' || fail "the service's exposure score $score is above 2.5"
[ ! -e /etc/systemd/system/multi-user.target.wants/airlock.service ] || fail "the service was enabled on install"
getent passwd airlock >/dev/null || fail "postinst made no user airlock"
[ "$(stat -c %U /var/lib/airlock/models)" = airlock ] || fail "/var/lib/airlock/models does not belong to airlock"
port=18434
$sudo runuser -u airlock -- env -i PATH=/usr/bin:/bin HOME=/var/lib/airlock AIRLOCK_MODELS=/var/lib/airlock/models AIRLOCK_HOST=127.0.0.1:$port /usr/bin/airlock serve 2>"$work/service.log" &
service=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/version" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/api/version" >/dev/null || { cat "$work/service.log" >&2; fail "the service's command did not answer as user airlock"; }
$sudo pkill -TERM -u airlock -f 'airlock serve'
wait "$service" || { cat "$work/service.log" >&2; fail "the service's command did not stop cleanly on SIGTERM"; }
$sudo test -s /var/lib/airlock/.local/share/airlock/audit.jsonl || fail "the service wrote no audit log under /var/lib/airlock"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq airlock >/dev/null
getent passwd airlock >/dev/null && fail "purge left the user airlock"
[ -e /var/lib/airlock ] && fail "purge left /var/lib/airlock"
echo "service: verified, $security, stops cleanly; purge removed its user and data"
echo "package check passed: $(basename "$deb") ($(du -h "$deb" | cut -f1)), $(basename "$tarball") ($(du -h "$tarball" | cut -f1))"
