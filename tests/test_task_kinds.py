"""The task traits agree with the adapters, the prediction formats and the evaluators they stand for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segpipe.errors import ConfigError
from segpipe.masks.formats import PREDICTION_FORMATS, formats_for
from segpipe.models.tasks import ADAPTERS, get_adapter
from segpipe.task_kinds import TASK_KINDS, TRAITS, traits


@pytest.mark.parametrize("task", TASK_KINDS)
def test_each_adapter_carries_its_tasks_traits(task: str) -> None:
    adapter = get_adapter(task, num_labels=2)
    assert adapter.traits is TRAITS[task]
    assert ADAPTERS.get(task).default_monitor == TRAITS[task].headline_metric
    assert TRAITS[task].headline_metric in TRAITS[task].metrics


@pytest.mark.parametrize("task", TASK_KINDS)
def test_the_default_prediction_formats_are_registered_and_fit_the_task(task: str) -> None:
    defaults = TRAITS[task].default_formats
    assert defaults and set(defaults) <= set(PREDICTION_FORMATS.names())
    assert set(defaults) <= set(formats_for(task))


def test_an_unknown_task_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown task 'panoptic'; known: classification, semantic, binary"):
        traits("panoptic")


def test_the_vocabularies_load_without_torch() -> None:
    """The API and the CLI read them: importing them must not pull in the model libraries."""
    code = ("import sys, segpipe.task_kinds, segpipe.vocabulary; "
            "sys.exit(1 if {'torch', 'torchvision'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
