"""The API process never loads the model libraries (issue 17, point 5): a real server, after a train submit,
an export download and a Label Studio predict from stored predictions, has mapped no file of torch,
torchvision, smp or timm, and has imported none of them nor albumentations (which imports torch).

On a main from before this change the same test fails at the first assertion, naming torch's shared objects
(the train submit imported the model builders to check the model section)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.api.footprint import HEAVY_MODULES, heavy_files_mapped, prepare, serve_requests
from tests.support.live_server import live_api_process

# uvicorn on the app factory, writing the names in sys.modules to $SEGPIPE_TEST_MODULES_OUT when it exits, so
# no endpoint has to expose them. uvicorn shuts down on SIGTERM, then raises it again to the handler it found:
# this one exits normally, which runs the atexit hook.
_MODULES_AT_EXIT = (
    "import atexit, os, runpy, signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "def dump():\n"
    "    with open(os.environ['SEGPIPE_TEST_MODULES_OUT'], 'w') as out:\n"
    "        out.write('\\n'.join(sorted(sys.modules)))\n"
    "atexit.register(dump)\n"
    "sys.argv = ['uvicorn', *sys.argv[1:]]\n"
    "runpy.run_module('uvicorn', run_name='__main__', alter_sys=True)\n"
)
COMMAND = [sys.executable, "-c", _MODULES_AT_EXIT, "segpipe.api.app:create_app", "--factory", "--host", "127.0.0.1",
           "--log-level", "warning"]


def test_the_api_serves_submit_export_and_label_studio_without_torch(tmp_path: Path) -> None:
    served = prepare(tmp_path)
    modules_out = tmp_path / "modules.txt"
    env = {**served.env, "SEGPIPE_TEST_MODULES_OUT": str(modules_out)}
    with live_api_process(env, tmp_path / "api.log", command=COMMAND) as (base, proc):
        answers = serve_requests(base, served)
        mapped = heavy_files_mapped(proc.pid)
    assert answers == {"train submit": 201, "export": 200, "label studio predict": 200}
    assert mapped == [], f"the API process mapped files of the model libraries: {mapped[:5]}"
    assert modules_out.is_file(), (tmp_path / "api.log").read_text()[-2000:]
    imported = modules_out.read_text().split()
    assert "segpipe.api.app" in imported and "fastapi" in imported  # the dump is of the API process
    loaded = sorted(m for m in imported if m.split(".")[0] in HEAVY_MODULES)
    assert loaded == [], f"the API process imported: {loaded[:10]}"
