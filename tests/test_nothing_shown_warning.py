"""A predict job whose model found instances, none of them at the threshold, says so (and how to see them)."""

from segpipe.jobs.prediction import nothing_shown_warning


def test_warns_when_everything_found_is_below_the_threshold() -> None:
    warning = nothing_shown_warning(found=14, shown=0, threshold=0.5, floor=0.05)
    assert warning is not None and "14 instance(s)" in warning and "--score-threshold" in warning


def test_silent_when_something_is_shown_or_nothing_was_found() -> None:
    assert nothing_shown_warning(found=14, shown=2, threshold=0.5, floor=0.05) is None
    assert nothing_shown_warning(found=0, shown=0, threshold=0.5, floor=0.05) is None
