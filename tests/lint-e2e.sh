#!/usr/bin/env bash
# Lints the end-to-end scripts for checks that cannot fail. Under `set -e` bash ignores
# the status of a command negated with `!` and of every command of an `a && b` list but
# the last, so `! grep -q x` and `[ -f a ] && cmp a b` used as checks pass whatever
# happens. Fails with FILE:LINE for:
#   - a bare `! cmd` statement, also after `time` (write `if cmd; then fail "..."; fi`);
#   - an `a && b` list used as a statement, outside if/elif/while/until conditions,
#     [[ ]] and $( ) (write `if`, or end the list with `|| fail "..."`): after its `||`
#     only fail, exit, return or skip, or a `{ ...; }` group whose last command is one
#     of them (`|| echo "FAIL: x"` and `|| warn x` go on);
#   - a `[ ]` / `test` statement comparing a $( ) with != or testing it with -z (when
#     the command fails its empty output passes: write `v=$(cmd)` first, set -e checks
#     it, then `[ "$v" != x ] || fail "..."`);
#   - a script in tests/e2e/ whose first command is not `set -euo pipefail` (so that a
#     script run on its own checks as under tests/run-e2e.sh).
# Heredoc bodies (the Python oracles), quoted strings and comments are not shell code and
# are skipped. Not caught: checks inside a function that is itself called as a condition
# (`f || fail`, `if f`), where bash turns set -e off for the whole body; such functions
# must return the status of their checks themselves.
# Usage: tests/lint-e2e.sh [FILE...] (default: tests/e2e/*.sh, e2e/lib/*.sh and
# fixtures/*_lib.sh); tests/lint-e2e.sh --self-test checks the lint on tests/fixtures/lint/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = --self-test ]; then
  # the lint itself: tests/fixtures/lint/bad.sh is reported at exactly the lines marked
  # "# BAD", good.sh not at all
  fx=$here/fixtures/lint
  want=$(grep -n '# BAD$' "$fx/bad.sh" | cut -d: -f1 | tr '\n' ' ')
  got=$("$0" "$fx/bad.sh" 2>/dev/null | cut -d: -f2 | tr '\n' ' ') || true
  [ "$got" = "$want" ] || { echo "lint-e2e self-test: bad.sh reported at lines '$got', expected '$want'" >&2; exit 1; }
  "$0" "$fx/good.sh" || { echo "lint-e2e self-test: good.sh refused" >&2; exit 1; }
  echo "lint-e2e self-test: bad.sh refused at lines $want, good.sh accepted"
  exit 0
fi
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("$here"/e2e/*.sh "$here"/e2e/lib/*.sh "$here"/fixtures/*_lib.sh)

status=0
for f in "${files[@]}"; do
  # a sourced library (e2e/lib/, fixtures/*_lib.sh) needs no set line of its own
  case $f in */lib/* | *_lib.sh) need_set=0 ;; *) need_set=1 ;; esac
  awk -v need_set="$need_set" -v file="$f" '
    function report(line, what) { printf "%s:%d: %s\n", file, line, what; bad = 1 }
    # The shell code of one line at the top level: quoted strings, comments, $( ) and
    # backticks are dropped, then [[ ]]; a $( ) at the top level or in a top-level
    # double-quoted string leaves the mark @CS@. Quotes and $( ) may span lines (ctx, a stack:
    # S single quote, D double quote, C $( ), P ( inside $( ), B backtick).
    function strip(s,   out, i, c, n, top) {
      out = ""; n = length(s)
      for (i = 1; i <= n; i++) {
        c = substr(s, i, 1); top = substr(ctx, length(ctx), 1)
        if (top == "S") { if (c == "\x27") ctx = substr(ctx, 1, length(ctx) - 1); continue }
        if (c == "\\") { if (i == n && ctx == "") out = out c; i++; continue }
        if (top == "D") {
          if (c == "\"") ctx = substr(ctx, 1, length(ctx) - 1)
          else if (c == "$" && substr(s, i + 1, 1) == "(") { if (ctx == "D") out = out "@CS@"; ctx = ctx "C"; i++ }
          else if (c == "`") ctx = ctx "B"
          continue
        }
        if (top == "B" && c == "`") { ctx = substr(ctx, 1, length(ctx) - 1); continue }
        if (c == "#" && (i == 1 || substr(s, i - 1, 1) ~ /[ \t;]/)) break
        if (c == "\x27") { ctx = ctx "S"; continue }
        if (c == "\"") { ctx = ctx "D"; continue }
        if (c == "`") { ctx = ctx "B"; continue }
        if (c == "$" && substr(s, i + 1, 1) == "(") { if (ctx == "") out = out "@CS@"; ctx = ctx "C"; i++; continue }
        if (ctx != "" && c == "(") { ctx = ctx "P"; continue }
        if (ctx != "" && c == ")") { ctx = substr(ctx, 1, length(ctx) - 1); continue }
        if (ctx == "") out = out c
      }
      gsub(/\[\[.*\]\]/, "", out)
      return out
    }
    # Drops the conditions of if/elif/while/until: their status is meant to be tested.
    function drop_conditions(s,   out, m) {
      out = ""
      while (match(s, /(^|[;&|({ \t])(if|elif|while|until)[ \t]/)) {
        out = out substr(s, 1, RSTART + RLENGTH - 1)
        s = substr(s, RSTART + RLENGTH)
        if (match(s, /(;|^|[ \t])[ \t]*(then|do)([ \t;]|$)/)) s = substr(s, RSTART)
        else { s = ""; pending_cond = 1 }
      }
      return out s
    }
    # 1 when the handler after an `a && b ||` ends the script: fail, exit, return, skip,
    # or a { } group whose last command is one of them.
    function ends_check(h,   n, parts, last, k) {
      sub(/^[ \t]+/, "", h)
      if (h ~ /^(fail|exit|return|skip)([ \t;)}]|$)/) return 1
      if (h !~ /^\{[ \t]/ || !match(h, /\}/)) return 0
      n = split(substr(h, 2, RSTART - 2), parts, /;/)
      last = ""
      for (k = n; k >= 1 && last == ""; k--) { last = parts[k]; gsub(/^[ \t]+|[ \t]+$/, "", last) }
      return last ~ /^(fail|exit|return|skip)([ \t]|$)/
    }
    BEGIN { heredoc = ""; first_cmd = 0; code = ""; pending_cond = 0; ctx = "" }
    {
      line = $0
      if (heredoc != "") {
        t = line; if (heredoc_dash) sub(/^\t+/, "", t)
        if (t == heredoc) heredoc = ""
        next
      }
      # a heredoc starts on this line (outside quotes): its body is skipped
      if (ctx == "" && match(line, /<<-?[ \t]*[\x27"]?[A-Za-z_][A-Za-z_0-9]*/) && substr(line, RSTART + 2, 1) != "<") {
        w = substr(line, RSTART, RLENGTH)
        heredoc_dash = (w ~ /^<<-/)
        sub(/^<<-?[ \t]*/, "", w); gsub(/[\x27"]/, "", w)
        heredoc = w
      }
      if (code == "" && ctx == "") start = NR
      code = code strip(line)
      # a command continues on the next line after \, &&, || or |, and inside quotes
      if (ctx != "" || code ~ /\\$/) { sub(/\\$/, "", code); code = code " "; next }
      if (code ~ /(&&|\|\||\|)[ \t]*$/) { code = code " "; next }
      if (code ~ /\|\|[ \t]*\{[^}]*$/) { code = code " "; next }   # an `|| {` group goes on
      if (code ~ /^[ \t]*$/) { code = ""; next }
      if (!first_cmd) {
        first_cmd = 1
        if (need_set && code !~ /^set -euo pipefail[ \t]*$/)
          report(start, "the first command must be `set -euo pipefail`")
      }
      if (pending_cond) {   # a multi-line condition ends at then/do
        if (match(code, /(^|[ \t;])(then|do)([ \t;]|$)/)) { code = substr(code, RSTART); pending_cond = 0 }
        else { code = ""; next }
      }
      code = drop_conditions(code)
      this = code; code = ""
      if (this ~ /(^|[;&|{(]|[ \t](then|do|else))[ \t]*(time[ \t]+(-p[ \t]+)?)?![ \t]/)
        report(start, "a bare `! cmd` is not checked under set -e: use `if cmd; then fail ...; fi`")
      if (index(this, "&&")) {
        rest = this
        while ((i = index(rest, "&&")) > 0) rest = substr(rest, i + 2)
        if (!(i = index(rest, "||")) || !ends_check(substr(rest, i + 2)))
          report(start, "`a && b` is not checked under set -e: use `if a; then b; fi` or end it with `|| fail ...`")
      }
      if (this ~ /(^|[;&|{(]|[ \t](then|do|else))[ \t]*(\[|test)[ \t]([^]]*@CS@[^]]*!=|[^]]*!=[^]]*@CS@|[^]]*-z[ \t]+@CS@)/)
        report(start, "a $( ) in [ ] compared with != or -z passes when the command fails: assign it first")
    }
    END { exit bad }
  ' "$f" || status=1
done
if [ $status -ne 0 ]; then
  echo "lint-e2e: checks above cannot fail under set -e (tests/lint-e2e.sh says why)" >&2
fi
exit $status
