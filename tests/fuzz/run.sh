#!/usr/bin/env bash
# Builds the libFuzzer targets and the sanitized unit tests (clang, ASan + UBSan) into build-fuzz/,
# runs those unit tests, then each fuzz target for
# FUZZ_SECONDS (default 20) from its seed corpus in tests/fuzz/corpus/NAME (copied, so new
# inputs stay out of the source tree). A crash, a sanitizer report or an exception other than
# rw::Error fails the run; the reproducer is left as build-fuzz/crash-NAME-*. The executions per
# target go to build-fuzz/fuzz-report.md and stdout.
#
# The index target fuzzes the index folder's manifest (FAISS reads only hash-checked bytes); its
# raw-FAISS mode is for manual runs (tests/fuzz/fuzz_index.cpp says why).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${REWIND_FUZZ_BUILD_DIR:-build-fuzz}
SECS=${FUZZ_SECONDS:-20}
# native_model is built but not run by default: libtorch 1.13's TorchScript importer, which reads
# every LibTorch archive, segfaults on some damaged archives (in ScriptTypeParser::parseClassConstant,
# found by this target) and rewind cannot guard code inside libtorch. FUZZ_TARGETS="native_model"
# runs it by hand.
TARGETS=${FUZZ_TARGETS:-"csv_manifest npy idx image index"}
CORES=$(getconf _NPROCESSORS_ONLN)
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
t0=$(date +%s)
mkdir -p "$B"
cmake -S tests/fuzz -B "$B" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$B/configure.log" 2>&1 ||
  { cat "$B/configure.log" >&2; exit 1; }
cmake --build "$B" -j "$CORES" >"$B/build.log" 2>&1 || { tail -40 "$B/build.log" >&2; exit 1; }
build_s=$(( $(date +%s) - t0 ))
export ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=512:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1
export OMP_NUM_THREADS=1  # one input at a time: spinning OpenMP workers only slow the target
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp"
report="$B/fuzz-report.md"
# the unit tests of the same readers, the identity index, the importers and the statistics, built
# with ASan + UBSan (CMakeLists.txt here says which): any sanitizer report or failure fails the run
t1=$(date +%s)
set +e
OMP_WAIT_POLICY=PASSIVE "$B/sanitized_unit_tests" >"$B/sanitized_unit_tests.log" 2>&1
urc=$?
set -e
unit_s=$(( $(date +%s) - t1 ))
unit_n=$(grep -o '^\[  PASSED  \] [0-9]* tests' "$B/sanitized_unit_tests.log" | grep -o '[0-9]*' || echo 0)
if [ "$urc" = 0 ]; then unit_result="$unit_n tests passed, no sanitizer report"; else
  unit_result="**FAILED** (exit $urc, see $B/sanitized_unit_tests.log)"
  grep -E "runtime error|ERROR|SUMMARY|FAILED|#[0-9]+ " "$B/sanitized_unit_tests.log" | head -30 >&2
fi
{
  echo "# libFuzzer run ($(date -u +%Y-%m-%d), ${SECS} s per target, ${CORES} cores, build ${build_s} s)"
  echo
  echo "ASan + UBSan unit tests: $unit_result (${unit_s} s)."
  echo
  echo "| target | executions | exec/s | corpus (seeds -> end) | result |"
  echo "|---|---|---|---|---|"
} >"$report"
fail=0
[ "$urc" = 0 ] || fail=1
for t in $TARGETS; do
  seeds="tests/fuzz/corpus/$t"
  if [ -z "$(ls -A "$seeds" 2>/dev/null)" ]; then REWIND_FUZZ_SEEDS="$seeds" "$B/fuzz_$t"; fi
  work="$B/corpus-$t"; rm -rf "$work"; cp -r "$seeds" "$work"
  n0=$(ls "$work" | wc -l)
  extra=""
  set +e
  "$B/fuzz_$t" $extra -max_total_time="$SECS" -rss_limit_mb=3072 -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$B/crash-$t-" "$work" >"$B/fuzz-$t.log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$B/fuzz-$t.log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$B/fuzz-$t.log" | grep -o '[0-9]*$' || echo 0)
  n1=$(ls "$work" | wc -l)
  if [ "$rc" = 0 ]; then result="nothing found"; else result="**FAILED** (exit $rc, see $B/fuzz-$t.log)"; fail=1; fi
  echo "| $t | $execs | $rate | $n0 -> $n1 | $result |" >>"$report"
  if [ "$rc" != 0 ]; then grep -E "ERROR|SUMMARY|==[0-9]+==|deadly|uncaught|terminate" "$B/fuzz-$t.log" | head -20 >&2; fi
done
cat "$report"
exit $fail
