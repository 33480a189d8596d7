#!/usr/bin/env bash
# Browser timings of the annotation page (docs/ui.md): one slider step on a 64x64x3 image, and
# submit -> next image on screen. Measured in Debian's chromium with performance.now() by the page
# itself (window.aqplTimings) and printed by the two end-to-end tests that assert their targets.
#
#   benchmarks/browser_timings.sh            # needs /usr/bin/chromium (apt-get install -y chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" -m pytest tests/e2e/test_annotate.py -m browser -s -q -p no:cacheprovider \
    -k "next_task_needs_no_page_load or render_step" | grep -E "\(ms\)"
