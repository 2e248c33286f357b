"""Suite-wide settings: one torch thread everywhere.

On a shared CPU, torch's OpenMP threads busy-wait (steps got 5–40× slower), and float reductions split
over threads change results in the last bits, which a fixed-seed learning comparison can amplify. Set
before torch is imported, so worker subprocesses the tests start inherit it too; a test that checks
the thread default sets or removes ``OMP_NUM_THREADS`` itself.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

# One real Label Studio server per test session, shared by every module that asks for it (it takes
# minutes to start on a busy machine); defined here so that pytest sees a single session fixture.
from tests.labelstudio_server import label_studio_server  # noqa: E402,F401
# One S3-API server for the whole session: a session fixture imported into several modules would be one
# server per module, each re-pointing AWS_ENDPOINT_URL while clients made earlier keep the old one.
from tests.integration.s3_server import s3_server  # noqa: E402,F401
# The trained Mask R-CNN the engine's tests and the Label Studio box-to-mask test share (trained once).
from tests.engine.instance_run import instance_run  # noqa: E402,F401
