# Shared by the experiment scripts (sourced, not run).

# timed NAME CMD...: runs CMD and appends "NAME<TAB>wall seconds" to the TSV file $T.
timed() {
  local name="$1"; shift
  local t0; t0=$(date +%s.%N)
  "$@"
  awk -v n="$name" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%s\t%.1f\n", n, b - a }' >> "$T"
}
