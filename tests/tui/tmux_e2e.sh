#!/usr/bin/env bash
# End to end: run `dbt-dinmo tui` in a real terminal (tmux), press keys as a user would, and check
# what the screen shows after each step. Usage: tmux_e2e.sh DBT_DINMO_BINARY PROJECT_DIR
# (BRAZE_REST_URL and BRAZE_API_KEY in the environment). Prints the screen and exits 1 on failure.
set -euo pipefail

BIN=$1
PROJECT=$2
SOCK="dinmo-e2e-$$"  # a private tmux server: never touches the user's sessions
S=tui
t() { tmux -L "$SOCK" "$@"; }
trap 't kill-server 2>/dev/null || true; rm -f "$ERR"' EXIT

screen() { t capture-pane -t "$S" -p 2>/dev/null || true; }
ERR="${TMPDIR:-/tmp}/dinmo-e2e-$$.err"
fail() { echo "FAILED: $1"; echo "----- screen -----"; screen; cat "$ERR" 2>/dev/null; exit 1; }
until_shows() { for _ in $(seq 600); do screen | grep -qF -- "$1" && return 0; sleep 0.05; done; fail "never showed: $1"; }
until_gone() { for _ in $(seq 600); do screen | grep -qF -- "$1" || return 0; sleep 0.05; done; fail "still shows: $1"; }
keys() { t send-keys -t "$S" "$@"; }
type_text() { t send-keys -t "$S" -l "$1"; }

unset COLUMNS LINES NO_COLOR  # a real terminal: the app must read its size from tmux
t new-session -d -s "$S" -x 120 -y 40 \
  "cd '$PROJECT' && TERM=xterm-256color ESCDELAY=25 '$BIN' tui --profiles-dir .; echo exit status \$? >'$ERR'"

# The activations, then their last runs.
until_shows "braze_customer_attributes"
until_shows "partial"
until_shows "4 activation(s)"
sleep 1  # keys sent right after the first paint can be lost

# `/` filters by any text; the other activations disappear.
keys "/"
until_shows "Filter activations"  # the input is shown (and focused) before the text is typed
type_text "newsletter"
until_gone "braze_vip_flags"
until_shows "1 of 4 activation(s) match newsletter"
keys Enter   # leave the filter
keys Escape  # clear it
until_shows "braze_vip_flags"

# g: back to the first row; enter: its detail, with its run history.
keys g
keys Enter
until_shows "Run history: 2 run(s)"
until_shows "Mapping (15)"

# enter: the newest run, its rejected row, Braze's reason and the dashboard link.
keys Enter
until_shows "Rejected rows of braze_customer_attributes: 1"
until_shows "ISO-3166"
until_shows "user-search?query=C002"

# `/` searches the rejected rows.
keys "/"
until_shows "Search rejected rows:"
type_text "zzz"
until_shows "No rejected row matches"
keys Escape  # leave the search box (one key at a time: "\e\e" would read as alt+escape)
sleep 0.3
keys Escape  # clear the search
until_shows "C002"

# `?` shows the keys; escape closes it.
keys "?"
until_shows "dbt-dinmo dashboard: keys"
keys Escape
until_gone "dbt-dinmo dashboard: keys"

# Back twice, then `q` quits: the session ends with the app.
keys Escape
until_shows "Run history: 2 run(s)"
keys Escape
until_shows "4 activation(s)"
keys q
for _ in $(seq 100); do t has-session -t "$S" 2>/dev/null || { echo "OK"; exit 0; }; sleep 0.05; done
fail "the app did not quit on q"
