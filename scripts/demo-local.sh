#!/usr/bin/env bash
# Local demo of the safe core: a sample projects folder, the seed plan as a dry run,
# then applied, then undone. Everything lives under ./run/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
FILEOPS=.venv/bin/fileops
CASE=Abby-Sitgraves-MVA-07-13-2024
ROOT=run/projects
STATE=run/state

rm -rf run && mkdir -p "$ROOT/$CASE/uncategorized" "$ROOT/$CASE/Medical Records"
for i in 1 2 3; do printf 'scanned page %s\n' "$i" > "$ROOT/$CASE/uncategorized/file$i.pdf"; done
python3 - <<'PY'
import json, sys
plan = json.load(open("examples/seed-plan.json"))
plan["dry_run"] = False
json.dump(plan, open("run/seed-plan-apply.json", "w"), indent=2)
PY

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step "$FILEOPS" validate examples/seed-plan.json
step "$FILEOPS" plan examples/seed-plan.json --root "$ROOT"
step "$FILEOPS" apply run/seed-plan-apply.json --root "$ROOT" --state-dir "$STATE"
step find "$ROOT/$CASE" -not -path '*/.fileops*'
step "$FILEOPS" undo reorg-2024-07-13-abby-0001 --root "$ROOT" --state-dir "$STATE"
step find "$ROOT/$CASE" -not -path '*/.fileops*'
printf '\nThe sample tree is in %s; journals and results in %s.\n' "$ROOT" "$STATE"
