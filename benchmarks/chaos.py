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

Run: ``python benchmarks/chaos.py [--runs 1000] [--seed 0] [--json runs.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the campaign lives in tests/faults

from tests.faults.campaign import (
    OUTCOMES,
    Campaign,
    as_json,
    chaos_server,
    concurrent_streams,
    fault_classes,
    open_fds,
    summary,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', metavar='OUT', help='write every run (fault, engine, method, outcome, detail)')
    parser.add_argument('--quiet', action='store_true', help='do not print the runs that were not correct')
    args = parser.parse_args()

    print(f'{len(fault_classes())} fault classes, {args.runs} runs, seed {args.seed}')
    started = time.monotonic()
    with chaos_server() as server:
        Campaign(server, seed=args.seed + 1).run(3)  # warm up: lazily created state exists before counting
        gc.collect()
        fds_before = open_fds()
        campaign = Campaign(server, seed=args.seed, log=None if args.quiet else print)
        campaign.run(args.runs)
        gc.collect()
        fds_after = open_fds()
        server.plan(tokens=[f' t{i}' for i in range(50)])
        exact, seconds = asyncio.run(concurrent_streams(server.url, 256, 50))
    print()
    print(summary(campaign.runs))
    by_fault: Counter[str] = Counter(run.fault for run in campaign.runs if run.outcome != 'correct')
    if by_fault:
        print('fault classes with runs that were not correct: ' + ', '.join(f'{k} {v}' for k, v in by_fault.items()))
    print(f'file descriptors: {fds_before} before the campaign, {fds_after} after')
    print(f'256 concurrent async streams: {exact} exact, in {seconds:.2f}s')
    print(f'total time: {time.monotonic() - started:.0f}s (on a busy machine, timings vary)')
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(campaign.runs), indent=1) + '\n', encoding='utf-8')
    counts = campaign.counts()
    failed = any(counts[name] for name in OUTCOMES if name not in ('correct', 'typed error'))
    leaking = any(run.fds_left > 0 for run in campaign.runs) or fds_after > fds_before
    return 1 if failed or leaking or exact != 256 else 0


if __name__ == '__main__':
    sys.exit(main())
