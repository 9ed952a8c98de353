#!/usr/bin/env bash
# Installs fileops-daemon on this machine (what `make install` runs), idempotently, as root:
#   /opt/fileops/venv                      python3.11 venv with this repo pip-installed
#   /usr/lib/sysusers.d/fileops.conf       the fileops system user (then systemd-sysusers)
#   /usr/lib/tmpfiles.d/fileops.conf       /etc/fileops 0750 root:fileops (then systemd-tmpfiles)
#   /etc/fileops/fileops.env               from systemd/fileops.env.example, only if absent
#   /etc/systemd/system/fileops-daemon.service
#   /etc/systemd/system/fileops-console.service   (not enabled; docs/deploy-gce.md)
#   /etc/systemd/system/projects.mount     rendered: bucket, uid and gid of fileops
#   /etc/systemd/system/fileops-daemon.service.d/signing-key.conf   with --with-signing-key
# then `systemctl daemon-reload` when systemd runs this machine. Nothing is enabled or started.
#
# usage: scripts/install.sh [--projects-bucket NAME] [--with-signing-key] [--no-venv]
#   --projects-bucket NAME  the bucket mounted at /projects (or FILEOPS_PROJECTS_BUCKET); needed
#                           the first time, later the installed projects.mount keeps its bucket
#   --with-signing-key      install the drop-in that hands /etc/fileops/signing.key to the daemon
#   --no-venv               skip the venv (units and configuration only)
# environment:
#   DESTDIR=/some/root      install under that root instead of /: the user is created in
#                           DESTDIR/etc/passwd (systemd-sysusers --root), systemctl is not run.
#                           A venv made there keeps DESTDIR in its paths: for tests only.
#   PYTHON=python3.11       the interpreter the venv is made with (3.11 or newer)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
DESTDIR="${DESTDIR%/}"
PYTHON="${PYTHON:-python3.11}"
BUCKET="${FILEOPS_PROJECTS_BUCKET:-}"
WITH_VENV=1
WITH_SIGNING_KEY=0

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

while [ "$#" -gt 0 ]; do
    case "$1" in
        --no-venv) WITH_VENV=0 ;;
        --with-signing-key) WITH_SIGNING_KEY=1 ;;
        --projects-bucket) [ "$#" -ge 2 ] || die "--projects-bucket needs a bucket name"; BUCKET="$2"; shift ;;
        --projects-bucket=*) BUCKET="${1#*=}" ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || die "run as root (files are owned by root and the fileops group)"
if [ -n "$DESTDIR" ]; then
    case "$DESTDIR" in /*) ;; *) die "DESTDIR must be an absolute path, got $DESTDIR" ;; esac
    mkdir -p "$DESTDIR/etc"  # systemd-sysusers --root needs it for its lock file
fi

UNIT_DIR="$DESTDIR/etc/systemd/system"
MOUNT_UNIT="$UNIT_DIR/projects.mount"
ENV_FILE="$DESTDIR/etc/fileops/fileops.env"
VENV="$DESTDIR/opt/fileops/venv"

# Copies $1 to $2 with mode $3 unless $2 already has that content and mode.
put() {
    local src="$1" dst="$2" mode="$3"
    if [ -f "$dst" ] && cmp -s "$src" "$dst" && [ "$(stat -c %a "$dst")" = "${mode#0}" ]; then
        say "unchanged $dst"
        return
    fi
    install -D -m "$mode" -o 0 -g 0 "$src" "$dst"
    say "installed $dst"
}

# --- the bucket: given, or kept from the installed unit -------------------------------------------
if [ -z "$BUCKET" ] && [ -f "$MOUNT_UNIT" ]; then
    BUCKET="$(sed -n 's/^What=//p' "$MOUNT_UNIT" | head -n 1)"
    [ "$BUCKET" = "@PROJECTS_BUCKET@" ] && BUCKET=""
fi
[ -n "$BUCKET" ] || die "no projects bucket: pass --projects-bucket NAME (or FILEOPS_PROJECTS_BUCKET)"
# Bucket names: 3-222 of a-z 0-9 . _ -, starting and ending with a letter or digit (no gs://).
[[ "$BUCKET" =~ ^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$ ]] \
    || die "not a bucket name: '$BUCKET' (give the bare name, without gs://)"

# --- user, group, /etc/fileops --------------------------------------------------------------------
put "$REPO/systemd/fileops.sysusers.conf" "$DESTDIR/usr/lib/sysusers.d/fileops.conf" 0644
put "$REPO/systemd/fileops.tmpfiles.conf" "$DESTDIR/usr/lib/tmpfiles.d/fileops.conf" 0644

ROOT_ARG=()
[ -n "$DESTDIR" ] && ROOT_ARG=(--root="$DESTDIR")
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers "${ROOT_ARG[@]}" fileops.conf
elif [ -z "$DESTDIR" ]; then
    getent passwd fileops >/dev/null || useradd --system --user-group --no-create-home \
        --home-dir /var/lib/fileops --shell /usr/sbin/nologin fileops
else
    die "systemd-sysusers is needed to create the fileops user under DESTDIR"
fi

if [ -n "$DESTDIR" ]; then
    FILEOPS_UID="$(awk -F: '$1 == "fileops" { print $3 }' "$DESTDIR/etc/passwd")"
    FILEOPS_GID="$(awk -F: '$1 == "fileops" { print $3 }' "$DESTDIR/etc/group")"
else
    FILEOPS_UID="$(getent passwd fileops | cut -d: -f3)"
    FILEOPS_GID="$(getent group fileops | cut -d: -f3)"
fi
[[ "$FILEOPS_UID" =~ ^[0-9]+$ && "$FILEOPS_GID" =~ ^[0-9]+$ ]] || die "the fileops user was not created"
say "user fileops: uid $FILEOPS_UID, gid $FILEOPS_GID"

if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles "${ROOT_ARG[@]}" --create fileops.conf
fi
# Also where systemd-tmpfiles is missing, and whatever the folder's state was before.
install -d -m 0750 -o 0 -g "$FILEOPS_GID" "$DESTDIR/etc/fileops"

if [ -e "$ENV_FILE" ]; then
    say "kept existing $ENV_FILE"
else
    install -m 0640 -o 0 -g "$FILEOPS_GID" "$REPO/systemd/fileops.env.example" "$ENV_FILE"
    say "installed $ENV_FILE (edit it)"
fi

# --- units ------------------------------------------------------------------------------------------
rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
sed -e "s/@PROJECTS_BUCKET@/$BUCKET/g" \
    -e "s/@FILEOPS_UID@/$FILEOPS_UID/g" \
    -e "s/@FILEOPS_GID@/$FILEOPS_GID/g" \
    "$REPO/systemd/projects.mount" >"$rendered"
if grep -q '@[A-Z_]*@' "$rendered"; then
    die "projects.mount still has a placeholder after rendering"
fi
put "$rendered" "$MOUNT_UNIT" 0644
put "$REPO/systemd/fileops-daemon.service" "$UNIT_DIR/fileops-daemon.service" 0644
put "$REPO/systemd/fileops-console.service" "$UNIT_DIR/fileops-console.service" 0644
if [ "$WITH_SIGNING_KEY" -eq 1 ]; then
    put "$REPO/systemd/signing-key.conf" "$UNIT_DIR/fileops-daemon.service.d/signing-key.conf" 0644
    [ -f "$DESTDIR/etc/fileops/signing.key" ] \
        || say "warning: $DESTDIR/etc/fileops/signing.key is missing: the daemon will not start until it exists"
fi

# --- the venv ---------------------------------------------------------------------------------------
if [ "$WITH_VENV" -eq 1 ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3.11)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is older than 3.11"
    if [ ! -x "$VENV/bin/python" ]; then
        install -d -m 0755 -o 0 -g 0 "$DESTDIR/opt/fileops"
        "$PYTHON" -m venv "$VENV"
        say "created $VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    # --force-reinstall --no-deps: the repo's code replaces the installed one even when the
    # version number did not change; the second call installs or upgrades the dependencies.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$REPO"
    # [console]: `fileops console`, the approval web console (starlette, jinja2, pyjwt).
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$REPO[console]"
    "$VENV/bin/fileops" --help >/dev/null
    say "installed fileops-daemon into $VENV"
fi

# --- systemd ----------------------------------------------------------------------------------------
if [ -z "$DESTDIR" ]; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        say "systemctl daemon-reload done"
    else
        say "systemd is not running on this machine: no daemon-reload"
    fi
    if [ ! -x /sbin/mount.gcsfuse ] && [ ! -x /usr/sbin/mount.gcsfuse ]; then
        say "warning: gcsfuse is not installed (its mount helper /sbin/mount.gcsfuse is missing);"
        say "         install the gcsfuse package from Google's apt repository (see docs/deploy-gce.md)"
    fi
fi

cat <<EOF

Next steps:
  1. Edit $DESTDIR/etc/fileops/fileops.env (project, buckets, topics).
  2. Once per project, with an administrator's credentials (not the VM's service account),
     create the topics, subscriptions and buckets:
       set -a; . /etc/fileops/fileops.env; set +a; /opt/fileops/venv/bin/fileops bootstrap
  3. Mount the bucket and start the daemon:
       systemctl enable --now projects.mount fileops-daemon.service
  4. Check:
       systemctl status projects.mount fileops-daemon.service
       journalctl -u fileops-daemon -o json-pretty
EOF
