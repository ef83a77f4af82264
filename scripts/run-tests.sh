#!/bin/sh
# Runs every test file under test/ with node's test runner (one file at a time: the suites start
# their own brokers, databases and GStreamer pipelines and share 2 cores). Extra arguments are test
# files or directories to run instead of all of them.
set -eu
cd "$(dirname "$0")/.."
export UV_THREADPOOL_SIZE="${UV_THREADPOOL_SIZE:-128}"
export ARGUS_LOG_LEVEL="${ARGUS_LOG_LEVEL:-warn}"
export ARGUS_PROGRESS="${ARGUS_PROGRESS:-off}"
if [ "$#" -gt 0 ]; then
  files=$(find "$@" -name '*.test.ts' | sort)
else
  files=$(find test -name '*.test.ts' | sort)
fi
# --test-force-exit: a file's process ends once its tests have, so a handle left open after them
# cannot hold the whole run until CI's time limit. Seen once (detector-accuracy.test.ts stayed
# alive after passing); the likely cause, a bus read left blocked by a stopped GStreamer pipeline,
# is fixed in FrameSource. Tests that must leave nothing behind check for it themselves.
# --test-timeout: a test that waits for what never comes (a refused publish, a lost answer) fails
# after 5 minutes instead of holding the run until CI's limit; the slowest test takes about 1.
# ARGUS_TEST_TIMEOUT_MS raises it for the slow variants run on their own (npm run test:rollout-e2e).
# --import ./test/helpers/assert-messages.mjs: a failing assert.ok without a message fails at once
# with one (node 20 under tsx otherwise blocks the event loop for ever building it: see that file).
# shellcheck disable=SC2086
exec node --import tsx --import ./test/helpers/assert-messages.mjs --test --test-force-exit --test-timeout="${ARGUS_TEST_TIMEOUT_MS:-300000}" --test-concurrency=1 --test-reporter=spec $files
