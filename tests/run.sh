#!/usr/bin/env bash
# Runs every test binary given on the command line with cmocka's TAP output,
# shows each failure, and ends with one line: "N passed, N failed, N skipped".
# A binary that crashes or exits non-zero without reporting a failing test
# counts as one failure, so a segfault can never pass silently.
set -u
export CMOCKA_MESSAGE_OUTPUT=TAP
export CONFAB_TESTDATA="${CONFAB_TESTDATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/testdata}"
passed=0; failed=0; skipped=0
logdir="${BUILD:-build}/test-logs"; mkdir -p "$logdir"
if [ ! -d "$CONFAB_TESTDATA" ]; then
  echo "note: test data not found at $CONFAB_TESTDATA; tests that need it are skipped"
fi
for bin in "$@"; do
  name=$(basename "$bin")
  log="$logdir/$name.log"
  start=$(date +%s.%N)
  "$bin" >"$log" 2>&1; rc=$?
  secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.2f", e-s}')
  # cmocka TAP: "ok N - name", "not ok N - name", "not ok N # SKIP name".
  p=$(grep -cE '^ok [0-9]+ - ' "$log"); p=${p:-0}
  s=$(grep -cE '^(not )?ok [0-9]+ # SKIP' "$log"); s=${s:-0}
  f=$(grep -cE '^not ok [0-9]+ - ' "$log"); f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "CRASH $name (exit $rc)"; tail -20 "$log"; fi
  if [ "$f" -gt 0 ]; then
    echo "FAIL  $name: $p passed, $f failed, $s skipped (${secs}s)"
    grep -E -B2 -A8 '^not ok [0-9]+ - ' "$log" | head -60
  else
    echo "ok    $name: $p passed, $s skipped (${secs}s)"
  fi
  grep -E '^# SKIP: ' "$log" | sed 's/^# /      /' | sort -u | head -5
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
