"""The metrics segpipe's processes update while they work. Names follow Prometheus conventions: counters
end in ``_total`` when exposed, durations are in seconds, sizes in bytes.

Counters live in the process that does the work: the worker that ran a job, the reconciler that
re-queued one, the API process that answered a request. Label values come from fixed vocabularies (job
kinds, outcomes, HTTP methods, route templates, status codes), never from ids or user input.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series only double what a scrape stores; Prometheus does not need them

# A job takes from seconds (a Label Studio predict) to a day (a big training).
JOB_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 24 * 3600.0)
# Request latencies: the masks endpoint answers in milliseconds; uploads and Label Studio predictions in seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

JOBS_RUN = Counter(
    "segpipe_worker_jobs", "Jobs a worker ran until it stopped, by kind and outcome "
    "(succeeded, failed, cancelled, handed-off, lease-lost)", ["kind", "outcome"])
JOB_DURATION = Histogram(
    "segpipe_worker_job_duration_seconds", "Wall time of a job's run in a worker, by kind and outcome",
    ["kind", "outcome"], buckets=JOB_BUCKETS)
CLAIMS = Counter(
    "segpipe_worker_claims", "Job deliveries a worker received, by what the claim found "
    "(claimed, taken_over = a dead worker's expired lease, duplicate, finished, cancelled, gave_up, missing)",
    ["outcome"])
IMAGES_PREDICTED = Counter(
    "segpipe_worker_images_predicted", "Images a worker predicted and stored (rate() is images per second)",
    ["kind"])
LEASE_EXPIRIES = Counter(
    "segpipe_lease_expiries", "Running jobs whose lease expired (their worker died) that the reconciler re-queued")
REPUBLISHED = Counter(
    "segpipe_republished", "Queued jobs whose broker message was lost and that the reconciler re-published")
HTTP_REQUESTS = Counter(
    "segpipe_http_requests", "HTTP requests the API answered, by method, route template and status code",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "segpipe_http_request_duration_seconds", "Time from a request's arrival to the end of its response, by "
    "method and route template", ["method", "route"], buckets=HTTP_BUCKETS)
