"""Load and latency evaluation of any engine: workloads, an async runner,
statistics and reports (``lagent bench`` is the command-line face)."""

from lagent.bench.runner import BenchRun, RequestRecord, run_benchmark
from lagent.bench.stats import BenchSummary, LatencyStats, percentile, summarize
from lagent.bench.workload import BenchRequest, load_dataset, poisson_arrivals, synthetic_requests

__all__ = [
    'BenchRequest',
    'BenchRun',
    'BenchSummary',
    'LatencyStats',
    'RequestRecord',
    'load_dataset',
    'percentile',
    'poisson_arrivals',
    'run_benchmark',
    'summarize',
    'synthetic_requests',
]
