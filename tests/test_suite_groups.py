"""The suite runs in several xdist processes (`make test`); one real Label Studio server per process is
too heavy for CI's two cores, so every module that uses it must be in the one ``label-studio`` group."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
SHARED_SERVER = "label_studio_server"
GROUP_MARK = 'xdist_group("label-studio")'
DEFINES_IT = {TESTS / "conftest.py", TESTS / "support" / "labelstudio_server.py"}


def test_every_module_using_the_label_studio_server_is_in_its_xdist_group() -> None:
    users = [p for p in sorted(TESTS.rglob("*.py")) if p not in DEFINES_IT and SHARED_SERVER in p.read_text()]
    assert users, "no test module uses the Label Studio server fixture: has it been renamed?"
    missing = [str(p.relative_to(TESTS)) for p in users if GROUP_MARK not in p.read_text()]
    assert not missing, f"add pytest.mark.{GROUP_MARK} to the pytestmark of: {', '.join(missing)}"
