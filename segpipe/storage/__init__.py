"""Files beyond one machine: data roots and the artifact root may be object-store URIs (fsspec).

- `uri` — the `Uri` type that config paths may carry (``s3://bucket/prefix/…``), and its confinement
  (the prefix rule of `segpipe.paths.confine`, applied to the normalised URI);
- `remote` — the fsspec filesystem of a URI (s3fs for ``s3://``; credentials and endpoint come from
  the standard ``AWS_*`` environment, e.g. ``AWS_ENDPOINT_URL`` for MinIO);
- `cache` — a worker's download cache, keyed by URI and content tag (ETag), with a size cap;
- `staging` — a job's spec with every URI replaced by its local copy, so the library reads files;
- `segpipe.stores.artifacts` keeps job files in a local mirror and uploads them to a remote root.

Local paths stay the default and behave exactly as before: nothing here runs for them.
"""
