"""The documentation site's reference pages are generated from the code (docs/hooks/reference.py): a
field, setting, command or route added to the code appears in them with no edit to docs/."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import typer
from fastapi import FastAPI
from pydantic import Field

from segpipe.config import JobConfig, TrainConfig
from segpipe.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", REPO / "docs/hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_new_config_field_appears_with_its_type_default_and_description(reference: ModuleType) -> None:
    class TrainWithRatio(TrainConfig):
        warmup_ratio: float = Field(0.05, ge=0, le=1, description="warm-up length as a fraction of all steps")

    class JobWithRatio(JobConfig):
        train: TrainWithRatio = Field(default_factory=TrainWithRatio, description="the training loop")

    before = reference.config_reference(JobConfig)
    after = reference.config_reference(JobWithRatio)
    row = "| `warmup_ratio` | float | `0.05` | warm-up length as a fraction of all steps |"
    assert row not in before and row in after
    # every other key is still there, nested sections included
    assert "| `epochs` | int | `10` |" in after and "| `backbone_weights` | str \\| None | None |" in after
    assert "### SourceConfig" in after and "`data.train`" in after


def test_every_job_config_field_and_setting_has_a_description(reference: ModuleType) -> None:
    """A key without a description would show an empty cell in the reference: describe it in the model."""
    missing = [f"{m.__name__}.{name}" for m in _models_under(JobConfig) for name, f in m.model_fields.items()
               if not f.description]
    missing += [f"Settings.{name}" for name, f in Settings.model_fields.items() if not f.description]
    assert not missing, f"describe these fields (Field(description=...)): {', '.join(missing)}"


def _models_under(root: type) -> list[type]:
    found: list[type] = []

    def walk(model: type) -> None:
        if model in found:
            return
        found.append(model)
        for field in model.model_fields.values():  # type: ignore[attr-defined]
            for nested in _nested(field.annotation):
                walk(nested)

    walk(root)
    return found


def _nested(annotation: object) -> list[type]:
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested(arg)]


def test_a_new_setting_appears_as_its_environment_variable(reference: ModuleType) -> None:
    class MoreSettings(Settings):
        gpu_memory_fraction: float = Field(0.9, gt=0, le=1, description="share of a GPU one worker may use")

    page = reference.settings_reference(MoreSettings)
    assert "| `SEGPIPE_GPU_MEMORY_FRACTION` | float | `0.9` | share of a GPU one worker may use |" in page
    assert "| `SEGPIPE_WEIGHTS_MIRROR` |" in page and "SEGPIPE_GPU_MEMORY_FRACTION" not in reference.settings_reference()


def test_cli_and_api_pages_come_from_the_app_and_the_openapi_document(reference: ModuleType) -> None:
    app = typer.Typer()
    group = typer.Typer(help="weights")
    app.add_typer(group, name="weights")

    @group.command("prune")
    def prune(keep: int = typer.Option(3, "--keep", help="Newest files to keep.")) -> None:
        """Delete old weight files."""

    @app.command()
    def other() -> None:
        """Another command."""

    page = reference.cli_reference(app)
    assert "## `segpipe weights prune`" in page and "| `--keep` | int | `3` | Newest files to keep. |" in page
    assert "Delete old weight files." in page

    api = FastAPI(title="t", version="9")

    @api.get("/things/{name}", summary="One thing")
    def thing(name: str, limit: int = 5) -> dict[str, str]:
        return {}

    text = reference.api_reference(api.openapi())
    assert "## `GET /things/{name}`" in text and "| `limit` | query | integer | no |" in text

    real = reference.cli_reference()
    assert "## `segpipe weights pull`" in real and "## `segpipe demo`" in real


def test_the_registries_page_lists_every_registered_name(reference: ModuleType) -> None:
    from segpipe.masks.formats import PREDICTION_FORMATS
    from segpipe.models.registry import MODELS

    page = reference.registries_reference()
    for name in [*MODELS.names(), *PREDICTION_FORMATS.names(), "torchvision", "smp", "predict-shard"]:
        assert f"| `{name}` |" in page, name


# The strict build itself (broken links and anchors fail it) runs in .ci/run as `make docs`, once.
