#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, idempotently.
#   fuse3    - fusermount3 and the FUSE userspace pieces gcsfuse needs (tests/emulators)
#   systemd  - systemd-analyze, to verify the units in systemd/ (only if missing)
#   rclone   - baseline for the benchmarks (only if missing)
#   chromium, chromium-driver - headless browser for the console's browser tests (Selenium uses
#              these; nothing is downloaded at test time)
# Runs `apt-get update` only when something actually has to be installed.
# Needs root (or sudo) and apt-get; prints what it does and exits 0 when all is present.
set -euo pipefail

want=()

# fuse3 provides fusermount3; check the command and the package both.
if ! command -v fusermount3 >/dev/null 2>&1 || ! dpkg-query -W -f='${Status}' fuse3 2>/dev/null | grep -q 'install ok installed'; then
    want+=(fuse3)
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    want+=(systemd)
fi
if ! command -v rclone >/dev/null 2>&1; then
    want+=(rclone)
fi

if ! command -v chromium >/dev/null 2>&1; then
    want+=(chromium)
fi
if ! command -v chromedriver >/dev/null 2>&1; then
    want+=(chromium-driver)
fi

if [ "${#want[@]}" -eq 0 ]; then
    echo "system-deps: fuse3, systemd-analyze, rclone and chromium already present"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${want[*]} and no apt-get on this machine; install them by hand" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "system-deps: need root (or sudo) to install ${want[*]}" >&2
        exit 1
    fi
fi

echo "system-deps: installing ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${want[@]}"
echo "system-deps: done"
