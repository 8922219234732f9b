#!/bin/sh
# Starts Airlock's desktop app from this portable folder. The app uses the system's WebKitGTK and
# GTK, which this folder does not carry: when a library is missing, say which, and how to get it.
set -u
self=$(readlink -f -- "$0" 2>/dev/null) || self=$0
dir=$(CDPATH='' cd -- "$(dirname -- "$self")" && pwd -P) || exit 1
app="$dir/bin/airlock-desktop"
if [ ! -x "$app" ]; then
    echo "airlock-desktop: $app is not in this folder; this copy of Airlock has the command line only: $dir/bin/airlock" >&2
    exit 1
fi
if command -v ldd >/dev/null 2>&1; then
    missing=$(ldd "$app" 2>/dev/null | sed -n 's/^[[:space:]]*\([^[:space:]]*\) => not found.*/\1/p' | sort -u)
    if [ -n "$missing" ]; then
        echo "airlock-desktop cannot start: these libraries are missing on this system:" >&2
        for lib in $missing; do
            echo "  $lib" >&2
        done
        echo "On Debian or Ubuntu, the package libwebkit2gtk-4.1-0 provides the WebKitGTK runtime (and GTK):" >&2
        echo "  sudo apt-get install libwebkit2gtk-4.1-0" >&2
        echo "from your site's Debian mirror or installation media. The command line needs none of them: $dir/bin/airlock" >&2
        exit 1
    fi
fi
exec "$dir/bin/airlock-desktop" "$@"
