"""Suite-wide settings: one torch thread everywhere.

On a shared CPU, torch's OpenMP threads busy-wait (steps got 5–40× slower), and float reductions split
over threads change results in the last bits, which a fixed-seed learning comparison can amplify. Set
before torch is imported, so worker subprocesses the tests start inherit it too; a test that checks
the thread default sets or removes ``OMP_NUM_THREADS`` itself.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
