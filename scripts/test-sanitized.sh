#!/usr/bin/env bash
# The sanitizer and fuzzing part of the test suite (scripts/test.sh runs it after the main
# suite): the suite built with clang under AddressSanitizer + UndefinedBehaviorSanitizer
# (./build-san), run without the end-to-end suites that repeat the same library code through
# more processes (ResumeDrill, DataParallel, ExpertParallel, Cli, BadInput, Experiments: ~10 of the
# sanitized suite's ~15 minutes here), then every fuzz target for FUZZ_SECONDS (default 20).
# A sanitizer report fails its test (UBSan does not recover); leaks are reported at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-san.sh
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
(cd build-san && ctest --output-on-failure -j "$(nproc)" --timeout 900 -E '^(ResumeDrill|DataParallel|ExpertParallel|Cli|BadInput|Experiments)\.')
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
