"""Prometheus metrics of the API and the workers (docs/metrics.md lists every one).

- `segpipe.metrics.definitions`: the counters, histograms and gauges a process updates as it works;
- `segpipe.metrics.collectors`: what is read at scrape time (jobs by kind and state, queue depth, memory,
  build info);
- `segpipe.metrics.exposition`: one scrape's text, from this process or, in the client's multiprocess
  mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``segpipe api`` for its uvicorn workers), from them all;
- `segpipe.metrics.worker_server`: a worker's own ``/metrics`` port, behind the metrics token.
"""
