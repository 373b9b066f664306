"""The fault campaign at full length: 1,000+ seeded runs of the HTTP engines
against a chaos server, then 256 concurrent async streams.

Every run draws a fault class (all of them in turn), an engine
(``OpenAICompatible``, ``LMDeployClient``, ``GPTAPI``), a public method (sync
or async) and a request shape; the server breaks the answer as the fault says
(resets at every phase, stalls, slow-loris headers and bodies, a huge chunk
dribbling in, lying chunk sizes, truncated bodies, bad and deeply nested JSON,
fields of the wrong type, lines past the cap, BOM, CR line endings, gzip
oddities, 429/5xx with every form of ``Retry-After``, 4xx bodies echoing the
key, in-band errors, a missing ``[DONE]``...). Outcomes are counted as
correct, typed error, untyped, hang, silent loss and leak (see
``tests/faults/campaign.py``); file descriptors are counted after every run.

Goal: zero untyped, zero hangs, zero silent losses, zero leaks, no descriptor
left open, 256 of 256 concurrent streams exact. Exits with status 1 otherwise.

Run: ``python benchmarks/chaos.py [--runs 1000] [--seed 0] [--json report.json]``. The CI test
(``tests/faults/test_chaos.py``) runs it with ``--runs 200``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the campaign lives in tests/faults

from tests.faults.campaign import OUTCOMES, fault_classes, full_campaign, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--streams', type=int, default=256, help='concurrent async streams after the campaign')
    parser.add_argument('--json', metavar='OUT', help='write the report: every run (fault, engine, method, '
                        'outcome, detail, descriptors left) and the descriptor and stream figures')  # fmt: skip
    parser.add_argument('--quiet', action='store_true', help='do not print the runs that were not correct')
    args = parser.parse_args()

    print(f'{len(fault_classes())} fault classes, {args.runs} runs, seed {args.seed}', flush=True)
    started = time.monotonic()
    report = full_campaign(args.runs, args.seed, streams=args.streams, log=None if args.quiet else print)
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=1) + '\n', encoding='utf-8')
    print()
    print(summary(report.runs))
    by_fault: Counter[str] = Counter(run.fault for run in report.runs if run.outcome != 'correct')
    if by_fault:
        print('fault classes with runs that were not correct: ' + ', '.join(f'{k} {v}' for k, v in by_fault.items()))
    print(f'file descriptors opened by the campaign and still open: {report.fds_opened or "none"}')
    print(f'{report.concurrent_count} concurrent async streams: {report.concurrent_exact} exact, '
          f'in {report.concurrent_seconds:.2f}s; descriptors left: {report.concurrent_fds_opened or "none"}')  # fmt: skip
    print(f'total time: {time.monotonic() - started:.0f}s (on a busy machine, timings vary)')
    counts = report.counts()
    failed = any(counts[name] for name in OUTCOMES if name not in ('correct', 'typed error'))
    leaking = any(run.fds_left for run in report.runs) or report.fds_opened or report.concurrent_fds_opened
    return 1 if failed or leaking or report.concurrent_exact != report.concurrent_count else 0


if __name__ == '__main__':
    sys.exit(main())
