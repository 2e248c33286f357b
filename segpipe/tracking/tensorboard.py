"""TensorBoard: event files in the run directory (``tensorboard --logdir runs/`` compares runs).

Scalars go under ``train/…`` (per logged step), ``train_epoch/…`` and ``val/…`` (per epoch, at the
step the epoch ended) and ``final/…``; the run's pictures as images named after their files. Needs
the ``tensorboard`` package (a dependency); without it the tracker is off and says so once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segpipe.tracking import TRACKERS, TrackingContext


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, run_dir: Path, hparams_text: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.writer: Any = SummaryWriter(log_dir=str(run_dir))
        self.writer.add_text("config", hparams_text, 0)

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_pictures(self, pictures: list[Path], step: int) -> None:
        import cv2

        for path in pictures:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None:
                self.writer.add_image(f"plots/{path.stem}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), step,
                                      dataformats="HWC")
        self.writer.flush()

    def log_artifacts(self, files: dict[str, Path]) -> None:
        """The files are already in the run directory, beside the event files."""

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.writer.add_text(f"tags/{key}", value, 0)

    def close(self, status: str) -> None:
        self.writer.close()

    def reference(self) -> dict[str, str]:
        return {"tensorboard_logdir": str(self.run_dir)}


@TRACKERS.register("tensorboard", description="event files in the run directory")
def open_tensorboard(ctx: TrackingContext) -> TensorBoardTracker | None:
    text = "\n".join(f"    {line}" for line in _yaml(ctx.config).splitlines())  # markdown code block
    tracker = TensorBoardTracker(ctx.run_dir, text)
    tracker.set_tags(ctx.tags)
    return tracker


def _yaml(config: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)
