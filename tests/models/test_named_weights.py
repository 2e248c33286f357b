"""Pretrained weights by name (`segpipe.pretrained`): a loopback HTTP server stands in for the download
hosts (download.pytorch.org, huggingface.co) through ``SEGPIPE_WEIGHTS_MIRROR``. It serves files built
from the libraries' own constructors with random weights; a torchvision file is named with its own
sha256 prefix, as torchvision's are, and the hub's files carry their sha256 as ETag, as the hub's do.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save as save_safetensors
from torchvision.models._api import Weights, WeightsEnum
from typer.testing import CliRunner

from segpipe.config import ModelConfig
from segpipe.errors import ConfigError, WeightsError
from segpipe.models import build_model
from segpipe.pretrained import lookup
from segpipe.settings import get_settings
from tests.integration.s3_server import S3Server


class WeightsHost:
    """path → (bytes, ETag or None); counts GETs per path."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str | None]] = {}
        self.gets: dict[str, int] = {}
        host = self

        class Handler(BaseHTTPRequestHandler):
            def _head(self) -> bytes | None:
                found = host.files.get(self.path)
                if found is None:
                    self.send_error(404)
                    return None
                body, etag = found
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if etag:
                    self.send_header("ETag", f'"{etag}"')
                self.end_headers()
                return body

            def do_HEAD(self) -> None:
                self._head()

            def do_GET(self) -> None:
                body = self._head()
                if body is not None:
                    host.gets[self.path] = host.gets.get(self.path, 0) + 1
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host() -> Iterator[WeightsHost]:
    server = WeightsHost()
    yield server
    server.stop()


def _use_home(monkeypatch: pytest.MonkeyPatch, home: Path, artifacts: Path | str, mirror: str) -> None:
    monkeypatch.setenv("SEGPIPE_HOME", str(home))
    monkeypatch.setenv("SEGPIPE_ARTIFACT_ROOT", str(artifacts))
    monkeypatch.setenv("SEGPIPE_WEIGHTS_MIRROR", mirror)
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _torch_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture
def resnet18_file(host: WeightsHost, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, torch.Tensor]]:
    """A random torchvision resnet18 saved as torchvision saves its weights, named with its sha256 prefix,
    and a catalogue entry for it (torchvision's enums are looked up by name in torchvision.models)."""
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    body = _torch_bytes(state)
    prefix = hashlib.sha256(body).hexdigest()[:8]
    path = f"/models/resnet18-{prefix}.pth"
    host.files[path] = (body, None)

    class SegpipeTestResNet18_Weights(WeightsEnum):
        RANDOM_V1 = Weights(url=f"https://download.pytorch.org{path}", transforms=lambda x: x, meta={})

    monkeypatch.setattr(torchvision.models, "SegpipeTestResNet18_Weights", SegpipeTestResNet18_Weights, raising=False)
    return "torchvision:SegpipeTestResNet18_Weights.RANDOM_V1", state


def _same_except_head(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    body = [k for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert body and all(torch.equal(own[k], state[k]) for k in body)


def test_a_torchvision_name_downloads_once_and_every_home_shares_the_bytes(
    host: WeightsHost, resnet18_file: tuple[str, dict[str, torch.Tensor]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, state = resnet18_file
    artifacts = tmp_path / "artifacts"
    _use_home(monkeypatch, tmp_path / "host-a", artifacts, host.url)
    model = build_model(ModelConfig(name="resnet18", weights=name), "classification", 3)
    _same_except_head(model, state)  # fc re-initialised: 3 classes, the file has 1000
    stored = artifacts / "weights" / "torchvision" / next(iter(host.gets)).rsplit("/", 1)[-1]
    assert stored.is_file() and list(host.gets.values()) == [1]

    # Another host: its own home, the same artifact root, and the download host gone.
    host.stop()
    _use_home(monkeypatch, tmp_path / "host-b", artifacts, host.url)
    again = build_model(ModelConfig(name="resnet18", weights=name), "classification", 3)
    _same_except_head(again, state)

    listed = CliRunner().invoke(_cli(), ["weights", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert name in listed.output and hashlib.sha256(stored.read_bytes()).hexdigest() in listed.output


def test_a_real_catalogue_name_whose_bytes_do_not_match_is_refused_and_nothing_is_stored(
    host: WeightsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = lookup("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert entry.url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    host.files["/models/resnet18-f37072fd.pth"] = (_torch_bytes(torchvision.models.resnet18().state_dict()), None)
    _use_home(monkeypatch, tmp_path / "home", tmp_path / "artifacts", host.url)
    with pytest.raises(WeightsError, match=r"refused: .* sha256 [0-9a-f]{64}, but its name says it starts with f37072fd"):
        build_model(ModelConfig(name="resnet18", weights="torchvision:ResNet18_Weights.IMAGENET1K_V1"),
                    "classification", 3)
    assert not [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]


def test_a_cached_file_that_changed_is_refused_never_loaded(
    host: WeightsHost, resnet18_file: tuple[str, dict[str, torch.Tensor]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, _ = resnet18_file
    _use_home(monkeypatch, tmp_path / "home", tmp_path / "artifacts", host.url)
    result = CliRunner().invoke(_cli(), ["weights", "pull", name])
    assert result.exit_code == 0, result.output
    stored = next((tmp_path / "artifacts" / "weights" / "torchvision").glob("*.pth"))
    # Swapped for another perfectly loadable state dict: only the checksum can tell.
    stored.write_bytes(_torch_bytes(torchvision.models.resnet18().state_dict()))
    with pytest.raises(WeightsError, match=r"refused: its sha256 is [0-9a-f]{64}, but its name says"):
        build_model(ModelConfig(name="resnet18", weights=name), "classification", 3)


def test_offline_the_error_names_the_url_and_where_to_put_the_file(
    host: WeightsHost, resnet18_file: tuple[str, dict[str, torch.Tensor]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, state = resnet18_file
    (path, (body, _)), = host.files.items()
    host.stop()  # nothing listens there any more
    _use_home(monkeypatch, tmp_path / "home", tmp_path / "artifacts", host.url)
    target = tmp_path / "artifacts" / "weights" / "torchvision" / path.rsplit("/", 1)[-1]
    with pytest.raises(WeightsError) as caught:
        build_model(ModelConfig(name="resnet18", weights=name), "classification", 3)
    message = str(caught.value)
    assert f"cannot download {host.url}{path}" in message and f"put the file at {target}" in message
    assert f"segpipe weights pull {name} --file FILE" in message

    # Following the message: the file fetched elsewhere, handed over with --file, checked, then used.
    fetched = tmp_path / "elsewhere.pth"
    fetched.write_bytes(body)
    result = CliRunner().invoke(_cli(), ["weights", "pull", name, "--file", str(fetched)])
    assert result.exit_code == 0, result.output
    _same_except_head(build_model(ModelConfig(name="resnet18", weights=name), "classification", 3), state)


def _smp_encoder_file(host: WeightsHost, etag: str | None = None) -> dict[str, torch.Tensor]:
    import segmentation_models_pytorch as smp

    torch.manual_seed(5)
    state = {k: v.contiguous() for k, v in smp.encoders.get_encoder("resnet18", weights=None).state_dict().items()}
    body = save_safetensors(state)
    entry = lookup("smp:resnet18/imagenet", role="backbone_weights")
    path = entry.url.removeprefix("https://huggingface.co")
    host.files[path] = (body, etag or hashlib.sha256(body).hexdigest())
    return state


def test_smp_encoder_weights_by_name_checked_against_the_hub_sha256(
    host: WeightsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = _smp_encoder_file(host)
    _use_home(monkeypatch, tmp_path / "home", tmp_path / "artifacts", host.url)
    cfg = ModelConfig(name="unet", encoder="resnet18", backbone_weights="smp:resnet18/imagenet")
    model = build_model(cfg, "binary", 2)
    encoder = model.encoder.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in state.items() if not k.endswith("num_batches_tracked"))


def test_smp_weights_whose_bytes_differ_from_the_published_sha256_are_refused(
    host: WeightsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _smp_encoder_file(host, etag="0" * 64)
    _use_home(monkeypatch, tmp_path / "home", tmp_path / "artifacts", host.url)
    with pytest.raises(WeightsError, match=r"refused: the file from .* has sha256 [0-9a-f]{64}, the host says 0{64}"):
        build_model(ModelConfig(name="unet", encoder="resnet18", backbone_weights="smp:resnet18/imagenet"), "binary", 2)


def test_smp_weights_offline_come_in_by_hand_with_the_hub_sha256(
    host: WeightsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = _smp_encoder_file(host)
    ((_, (body, sha)),) = host.files.items()
    host.stop()
    _use_home(monkeypatch, tmp_path / "home", tmp_path / "artifacts", host.url)
    cfg = ModelConfig(name="unet", encoder="resnet18", backbone_weights="smp:resnet18/imagenet")
    with pytest.raises(WeightsError, match=r"--file FILE --sha256 HEX` with the sha256 the hub shows"):
        build_model(cfg, "binary", 2)
    fetched = tmp_path / "model.safetensors"
    fetched.write_bytes(body)
    wrong = CliRunner().invoke(_cli(), ["weights", "pull", "smp:resnet18/imagenet", "--file", str(fetched),
                                        "--sha256", "1" * 64])
    assert wrong.exit_code == 2 and "refused" in wrong.output
    right = CliRunner().invoke(_cli(), ["weights", "pull", "smp:resnet18/imagenet", "--file", str(fetched),
                                        "--sha256", str(sha)])
    assert right.exit_code == 0, right.output
    encoder = build_model(cfg, "binary", 2).encoder.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in state.items() if not k.endswith("num_batches_tracked"))


def test_names_resolve_through_the_catalogues_and_unknown_ones_list_the_options() -> None:
    assert lookup("torchvision:DEFAULT", model="maskrcnn_resnet50_fpn").url == lookup(
        "torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1").url
    assert lookup("torchvision:ResNet50_Weights.IMAGENET1K_V2", role="backbone_weights").sha256_prefix == "11ad3fa6"
    with pytest.raises(ConfigError, match="ResNet50_Weights has ResNet50_Weights.IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V2"):
        lookup("torchvision:ResNet50_Weights.IMAGENET9")
    with pytest.raises(ConfigError, match="'maskrcnn_resnet18_fpn' is not one"):
        lookup("torchvision:DEFAULT", model="maskrcnn_resnet18_fpn")
    with pytest.raises(ConfigError, match="encoder 'resnet34' has weights resnet34/imagenet"):
        lookup("smp:resnet34/instagram", role="backbone_weights")
    with pytest.raises(ConfigError, match="give them as model.backbone_weights"):
        lookup("smp:resnet34/imagenet", role="weights")


def test_a_named_ref_stays_a_name_through_config_loading_and_submit_checks(tmp_path: Path) -> None:
    from segpipe import config
    from segpipe.jobs import specs as jobspec

    (tmp_path / "job.yaml").write_text(
        "task: classification\nmodel: {name: resnet50, weights: 'torchvision:DEFAULT', "
        "backbone_weights: 'torchvision:ResNet50_Weights.IMAGENET1K_V2'}\n")
    job = config.load(tmp_path / "job.yaml")
    assert job.model.weights == "torchvision:DEFAULT"
    assert job.model.backbone_weights == "torchvision:ResNet50_Weights.IMAGENET1K_V2"
    confined = jobspec.confine_spec(job, [tmp_path], tmp_path / "artifacts")
    assert confined.model.weights == "torchvision:DEFAULT"


def _cli():
    from segpipe.cli import app

    return app


def test_a_remote_artifact_root_shares_the_weights_between_hosts(
    host: WeightsHost, resnet18_file: tuple[str, dict[str, torch.Tensor]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Server,  # noqa: F811
) -> None:
    """Artifact root in object storage (a real S3 API server on loopback): the first host downloads and
    uploads; another host, offline, copies it from the bucket into its own cache and checks it; a copy
    that changed in the bucket is refused on a host that has none yet."""
    import s3fs

    name, state = resnet18_file
    fs = s3fs.S3FileSystem()  # the fixture set AWS_ENDPOINT_URL for this process
    if not fs.exists("weights-shared"):
        fs.mkdir("weights-shared")
    root = "s3://weights-shared/artifacts"
    _use_home(monkeypatch, tmp_path / "host-a", root, host.url)
    _same_except_head(build_model(ModelConfig(name="resnet18", weights=name), "classification", 3), state)
    (stored,) = [k for k in fs.find("weights-shared/artifacts/weights") if k.endswith(".pth")]

    host.stop()
    _use_home(monkeypatch, tmp_path / "host-b", root, host.url)
    _same_except_head(build_model(ModelConfig(name="resnet18", weights=name), "classification", 3), state)
    assert list((tmp_path / "host-b" / "cache" / "weights" / "torchvision").glob("*.pth"))
    listed = CliRunner().invoke(_cli(), ["weights", "list", "--json"])
    assert listed.exit_code == 0 and stored.rsplit("/", 1)[-1] in listed.output, listed.output

    fs.pipe(stored, _torch_bytes(torchvision.models.resnet18().state_dict()))  # changed in the bucket
    _use_home(monkeypatch, tmp_path / "host-c", root, host.url)
    with pytest.raises(WeightsError, match="refused: its sha256 is"):
        build_model(ModelConfig(name="resnet18", weights=name), "classification", 3)
