"""Data preparation: ``segpipe digits | holdout | shapes`` write datasets that the configs in
``configs/`` read (see ``configs/README.md``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from segpipe.cli import app

console = Console(highlight=False, soft_wrap=True)  # paths print whole, unwrapped


@app.command()
def digits(
    out_dir: Path = typer.Argument(..., help="Folder to write train/ and test/ into (e.g. data/digits)."),
    scale: int = typer.Option(1, "--scale", min=1, help="Upsample the 8×8 images by this factor (pixel repetition)."),
    force: bool = typer.Option(False, "--force", help="Write again into existing train/ and test/ folders."),
) -> None:
    """Write scikit-learn's 1,797 handwritten digits (bundled, no download) as class folders:
    OUT_DIR/{train,test}/<digit>/<index>.png, first half train, second half test (the split of
    scikit-learn's SVC example)."""
    from segpipe.data.digits import write_digits

    result = write_digits(out_dir, scale=scale, overwrite=force)
    console.print(
        f"digits: {result.counts['train']} train → {escape(str(result.train))}, "
        f"{result.counts['test']} test → {escape(str(result.test))}"
    )


@app.command()
def holdout(
    out_dir: Path = typer.Argument(..., help="Folder for the two splits and split.json."),
    val: str = typer.Option(..., "--val", help="Positions to hold out: FIRST-LAST in natural file order, e.g. 25-29."),
    images: Path = typer.Option(..., "--images", help="Image folder.", exists=True, file_okay=False),
    masks: Path | None = typer.Option(
        None, "--masks", help="Mask folder (image + mask folders).", exists=True, file_okay=False
    ),
    annotations: Path | None = typer.Option(
        None, "--annotations", help="COCO instances JSON.", exists=True, dir_okay=False
    ),
    mask_suffix: str = typer.Option(".png", "--mask-suffix", help="Mask file = image stem + this."),
    force: bool = typer.Option(False, "--force", help="Replace the splits of an earlier holdout in OUT_DIR."),
) -> None:
    """Split a dataset into train and val by holding out one contiguous block of images, not a random
    sample: for ordered data (serial sections, video frames) where neighbours are near-duplicates.

    With --masks: copies pairs into OUT_DIR/{train,val}/{images,masks}. With --annotations: writes
    OUT_DIR/train.json and OUT_DIR/val.json (the images stay where they are).
    """
    from segpipe.data.holdout import holdout_coco, holdout_mask_folders

    if (masks is None) == (annotations is None):
        raise typer.BadParameter("give exactly one of --masks (image + mask folders) or --annotations (COCO)")
    if masks is not None:
        split = holdout_mask_folders(images, masks, out_dir, val, mask_suffix=mask_suffix, overwrite=force)
    else:
        split = holdout_coco(images, annotations, out_dir, val, overwrite=force)  # type: ignore[arg-type]
    console.print(
        f"train: {len(split.train_names)} images → {escape(str(split.train))}\n"
        f"val:   {len(split.val_names)} images ({escape(split.val_names[0])} … {escape(split.val_names[-1])}) "
        f"→ {escape(str(split.val))}"
    )


@app.command()
def shapes(
    out_dir: Path = typer.Argument(..., help="Empty or new folder, e.g. data/smoke (what configs/smoke/ read)."),
    n_train: int = typer.Option(48, "--train", min=3, help="Training images per layout."),
    n_val: int = typer.Option(12, "--val", min=3, help="Validation images per layout."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write small generated shape datasets in every layout (COCO, mask folders, class folders), train
    and val, for the smoke configs in configs/smoke/."""
    from segpipe.data.smoke import write_smoke_data

    written = write_smoke_data(out_dir, n_train=n_train, n_val=n_val, seed=seed)
    console.print(f"shapes: coco, semantic, binary, classes → {escape(str(Path(written.coco).parent))}")
