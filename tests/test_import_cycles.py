"""The import-circle check of `make contracts` (tests/tools/import_cycles.py): what it finds, and segpipe today."""

from __future__ import annotations

from tests.tools.import_cycles import components, import_graph, package_of, report


def test_a_circle_across_two_packages_is_reported_and_one_inside_a_package_is_allowed() -> None:
    edges = {
        "segpipe.jobs.run": {"segpipe.stores.jobs"},
        "segpipe.stores.jobs": {"segpipe.jobs.run"},  # jobs ↔ stores: spans two packages
        "segpipe.masks.render": {"segpipe.masks.charts"},
        "segpipe.masks.charts": {"segpipe.masks.render"},  # inside masks
        "segpipe.config": {"segpipe.errors"},  # no circle
        "segpipe.errors": set(),
    }
    found = sorted(sorted(c) for c in components(edges))
    assert found == [["segpipe.jobs.run", "segpipe.stores.jobs"], ["segpipe.masks.charts", "segpipe.masks.render"]]
    lines, spanning = report(edges)
    assert spanning == 1
    assert lines[0].startswith("SPANS PACKAGES: 2 modules, packages segpipe.jobs, segpipe.stores")


def test_a_longer_circle_is_one_component() -> None:
    edges = {"a.x.1": {"a.y.2"}, "a.y.2": {"a.z.3"}, "a.z.3": {"a.x.1"}, "a.w": {"a.x.1"}}
    assert components(edges) == [{"a.x.1", "a.y.2", "a.z.3"}]


def test_package_of_is_the_first_level_below_segpipe() -> None:
    assert package_of("segpipe.jobs.sharding.runner") == "segpipe.jobs"
    assert package_of("segpipe.config") == "segpipe.config"


def test_no_import_circle_in_segpipe_spans_two_packages() -> None:
    lines, spanning = report(import_graph())
    assert spanning == 0, "\n".join(lines)
