#!/usr/bin/env bash
# The unit tests built with clang's AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
# and run. Not in the default test command: the sanitized build alone takes longer on 2 cores than
# the rest of CI together (README, Reliability). LibTorch, FAISS and OpenCV are Debian's
# uninstrumented builds, so reports point at rewind's own code; leaks inside them are suppressed
# (tests/fuzz/lsan.supp).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${REWIND_ASAN_BUILD_DIR:-build-asan}
command -v clang++ >/dev/null || { echo "asan: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
t0=$(date +%s)
cmake -S . -B "$B" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$B" -j "${REWIND_JOBS:-$(nproc)}" --target rewind_tests
t1=$(date +%s)
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp"
export OMP_WAIT_POLICY=PASSIVE
# ByteFlipsAreDetectedAndNeverCrash loads flipped files with the hash check off: FAISS then asks
# for a buffer the flipped size field names (16 GB), which ASan reports as out of memory where
# the plain build gets bad_alloc (an open item of #19: size fields checked before FAISS reads).
"$B/tests/rewind_tests" --gtest_filter="${GTEST_FILTER:-*}:-IdentityIndex.ByteFlipsAreDetectedAndNeverCrash"
t2=$(date +%s)
echo "asan-tests: build $((t1 - t0)) s, tests $((t2 - t1)) s"
