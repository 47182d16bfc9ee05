# Shared helpers of the CLI smoke tests (sourced). Needs $TMP; counts into $pass / $fail.
pass=0
fail=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_code() {  # expect_code CODE DESCRIPTION -- command...
  local want="$1" what="$2"; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"; local got=$?
  if [ "$got" = "$want" ]; then ok; else bad "$what: exit $got, want $want; stderr: $(head -c 600 "$TMP/err")"; fi
}
expect_grep() {  # expect_grep PATTERN FILE DESCRIPTION
  if grep -q -- "$1" "$2"; then ok; else bad "$3: '$1' not in $2: $(head -c 400 "$2")"; fi
}
