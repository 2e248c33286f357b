"""``segpipe labelstudio connect``: wire a Label Studio project to a segpipe model in one idempotent call.

From "I have a model" to "pre-labels on new tasks", on a Label Studio as it is installed:

1. **project** — found by id or title, created if it does not exist; its labeling config is written
   from the model's classes unless its current config already covers them (then it is left alone);
   predictions are fetched automatically when tasks are shown (``evaluate_predictions_automatically``);
2. **ML backend** — ``<segpipe>/ls/MODEL`` with Basic auth (password = a segpipe token), titled with the
   version it answers now (``NAME@N``); a connected backend at that URL is left alone, a disconnected or
   failing one gets the auth again, one with another title is renamed (`follow_version`);
3. **webhook** — Label Studio adds ``<backend>/webhook`` for every action, without headers, whenever
   a backend is created: segpipe would answer it 401 forever. It is replaced by one that sends
   ``Authorization: Bearer <token>`` for annotation events;
4. **storage** (optional) — a local-files source storage for a folder under Label Studio's
   ``LOCAL_FILES_DOCUMENT_ROOT``, so ``/data/local-files/?d=…`` image URLs resolve; never synced
   here (a "Sync" adds one task per file, beside any imported task that already shows the file).

Each step reports what it did (``created`` / ``updated`` / ``removed`` / ``unchanged``); a second run
with the same arguments reports only ``unchanged``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from segpipe.errors import ConfigError
from segpipe.labelstudio.client import LabelStudioClient
from segpipe.masks.formats.label_studio import labeling_config

WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
BACKEND_TITLE = "segpipe"
BACKEND_USER = "label-studio"
IMAGE_PATTERN = r".*\.(jpe?g|png|bmp|tiff?|webp)$"


@dataclass(frozen=True)
class ModelClasses:
    """What connect needs to know of a model version: its reference, task kind and classes."""

    ref: str  # NAME@production, NAME@latest or NAME@N: the backend URL names it
    task: str
    categories: Sequence[tuple[int, str]]  # (original id, name) in label order
    label: str | None = None  # NAME@N, the version ``ref`` resolves to now: the backend's title (None: "segpipe")


@dataclass(frozen=True)
class ConnectRequest:
    label_studio_url: str
    label_studio_token: str  # a personal access token or a legacy token, with or without "Token "
    model: ModelClasses
    segpipe_url: str  # segpipe's API as Label Studio reaches it (e.g. http://segpipe-api:8000)
    segpipe_token: str  # what Label Studio sends to segpipe (annotator role is enough)
    project: str  # a project id, or a title (created when no project has it)
    local_files: str | None = None  # a folder as Label Studio sees it, under its document root
    document_root: str | None = None  # Label Studio's LOCAL_FILES_DOCUMENT_ROOT (for the image-URL prefix)


@dataclass(frozen=True)
class Step:
    what: str  # project | labeling config | ML backend | webhook | storage | …
    action: str  # created | updated | removed | unchanged
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.action} ({self.detail})"


@dataclass
class ConnectResult:
    project_id: int
    backend_url: str
    steps: list[Step] = field(default_factory=list)
    image_url_prefix: str | None = None

    @property
    def changed(self) -> bool:
        return any(s.action != "unchanged" for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "backend_url": self.backend_url, "changed": self.changed,
                "image_url_prefix": self.image_url_prefix,
                "steps": [{"what": s.what, "action": s.action, "detail": s.detail} for s in self.steps]}


def connect(request: ConnectRequest) -> ConnectResult:
    """Make the project, backend, webhook and storage right; LabelStudioError naming the failing call."""
    with LabelStudioClient(request.label_studio_url, request.label_studio_token) as ls:
        steps: list[Step] = []
        project = _project(ls, request, steps)
        pid = int(project["id"])
        backend_url = f"{request.segpipe_url.rstrip('/')}/ls/{request.model.ref}"
        result = ConnectResult(pid, backend_url, steps)
        _labeling_config(ls, project, request.model, steps)
        _auto_predictions(ls, project, steps)
        _backend(ls, pid, backend_url, request.segpipe_token, request.model.label or BACKEND_TITLE, steps)
        _webhook(ls, pid, backend_url + "/webhook", request.segpipe_token, steps)
        if request.local_files:
            result.image_url_prefix = _storage(ls, pid, request.local_files, request.document_root, steps)
        return result


def _project(ls: LabelStudioClient, request: ConnectRequest, steps: list[Step]) -> dict[str, Any]:
    wanted = request.project.strip()
    if not wanted:
        raise ConfigError("connect: give the Label Studio project's id or title (--project)")
    if wanted.isdigit():
        project: dict[str, Any] = ls.get(f"/api/projects/{int(wanted)}")
        steps.append(Step("project", "unchanged", f"#{project['id']} {project.get('title')!r}"))
        return project
    for project in ls.listing("/api/projects/", title=wanted):
        if project.get("title") == wanted:
            steps.append(Step("project", "unchanged", f"#{project['id']} {wanted!r}"))
            return project
    config = labeling_config(request.model.task, list(request.model.categories))
    project = ls.post("/api/projects/", json={"title": wanted, "label_config": config,
                                              "evaluate_predictions_automatically": True})
    steps.append(Step("project", "created", f"#{project['id']} {wanted!r}"))
    return project


def covers_classes(config: str, task: str, classes: Sequence[str]) -> bool:
    """Whether a labeling config has a control segpipe can fill for ``task`` whose labels hold every class."""
    from segpipe.api.errors import ApiError
    from segpipe.api.labelstudio.label_config import PREFERRED, parse_controls

    if not config.strip():
        return False
    try:
        controls = parse_controls(config)
    except ApiError:
        return False
    wanted = set(classes)
    return any(c.tag in PREFERRED.get(task, ()) and wanted <= set(c.labels) for c in controls)


def _labeling_config(ls: LabelStudioClient, project: dict[str, Any], model: ModelClasses, steps: list[Step]) -> None:
    names = [name for _id, name in model.categories]
    if covers_classes(project.get("label_config") or "", model.task, names):
        steps.append(Step("labeling config", "unchanged", f"covers the classes of {model.ref}: {', '.join(names)}"))
        return
    config = labeling_config(model.task, list(model.categories))
    ls.patch(f"/api/projects/{project['id']}", json={"label_config": config})
    project["label_config"] = config
    steps.append(Step("labeling config", "updated", f"written from the classes of {model.ref}: {', '.join(names)}"))


def _auto_predictions(ls: LabelStudioClient, project: dict[str, Any], steps: list[Step]) -> None:
    if project.get("evaluate_predictions_automatically"):
        steps.append(Step("automatic predictions", "unchanged", "new tasks get predictions when shown"))
        return
    ls.patch(f"/api/projects/{project['id']}", json={"evaluate_predictions_automatically": True})
    steps.append(Step("automatic predictions", "updated", "new tasks get predictions when shown"))


def _same_url(a: str | None, b: str) -> bool:
    return (a or "").rstrip("/") == b.rstrip("/")


def _backend(ls: LabelStudioClient, pid: int, url: str, token: str, title: str, steps: list[Step]) -> None:
    auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": BACKEND_USER, "basic_auth_pass": token}
    for backend in ls.listing("/api/ml", project=pid):
        if not _same_url(backend.get("url"), url):
            continue
        connected = backend.get("state") == "CO" and backend.get("auth_method") == "BASIC_AUTH"
        if connected and backend.get("is_interactive") and backend.get("title") == title:
            steps.append(Step("ML backend", "unchanged", f"#{backend['id']} {url} connected, titled {title}"))
            return
        if connected:
            steps.append(_retitle(ls, backend, title))
            return
        # interactive: Label Studio sends boxes drawn with the smart tool to segpipe (box-to-mask)
        updated = ls.patch(f"/api/ml/{backend['id']}", json={**auth, "title": title, "is_interactive": True})
        _check_connected(updated, url)
        steps.append(Step("ML backend", "updated", f"#{backend['id']} {url}: Basic auth and interactive "
                                                   f"pre-annotations set, connected, titled {title}"))
        return
    # Label Studio makes a new backend's title the project's model version when it has none: the version
    # its data manager reads prediction scores of (see `follow_version`)
    created = ls.post("/api/ml", json={"project": pid, "title": title, "url": url, "is_interactive": True, **auth})
    backend = ls.get(f"/api/ml/{created['id']}")
    _check_connected(backend, url)
    steps.append(Step("ML backend", "created", f"#{backend['id']} {url} with Basic auth, connected, titled {title}"))


def _retitle(ls: LabelStudioClient, backend: dict[str, Any], title: str) -> Step:
    # Label Studio checks every change of a backend by calling it (health, setup): that needs the URL, the
    # project and the auth method again; an empty password keeps the stored one
    ls.patch(f"/api/ml/{backend['id']}", json={
        "title": title, "url": backend.get("url"), "project": backend.get("project"), "is_interactive": True,
        "auth_method": "BASIC_AUTH", "basic_auth_user": backend.get("basic_auth_user") or BACKEND_USER,
        "basic_auth_pass": ""})  # fmt: skip
    return Step("ML backend", "updated", f"#{backend['id']} {backend.get('url')}: titled {title} "
                                         f"(was {backend.get('title')!r}), interactive")


def follow_version(ls: LabelStudioClient, pid: int, name: str, label: str) -> list[Step]:
    """Title the project's segpipe backends that follow a moving reference of model ``name``
    (``/ls/NAME@production``, ``/ls/NAME@latest``) with the version ``label`` (``NAME@N``) they answer now.

    Label Studio's data manager sorts and filters by the prediction score of the project's model version
    only, and a backend's title is that version while the project follows the backend (renaming the backend
    moves the project's model version with it). A title that stayed at the old version would sort the
    tasks by the old model's predictions, or by none."""
    steps = []
    for backend in ls.listing("/api/ml", project=pid):
        url = (backend.get("url") or "").rstrip("/")
        if any(url.endswith(f"/ls/{name}@{moving}") for moving in ("production", "latest")) \
                and backend.get("title") != label:
            steps.append(_retitle(ls, backend, label))
    return steps


def follow_version_everywhere(ls: LabelStudioClient, name: str, label: str) -> list[tuple[int, Step]]:
    """`follow_version` in every project the token sees: a promotion or rollback by hand does not say
    which projects follow ``NAME@production``, and Label Studio lists backends per project only."""
    return [(project["id"], step) for project in ls.listing("/api/projects")
            for step in follow_version(ls, project["id"], name, label)]


def _check_connected(backend: dict[str, Any], url: str) -> None:
    if backend.get("state") != "CO":
        raise ConfigError(f"Label Studio could not use segpipe at {url}: its ML backend state is "
                          f"{backend.get('readable_state') or backend.get('state')} "
                          f"({backend.get('error_message') or 'no message'}); can Label Studio reach that URL, "
                          "and does it allow private addresses (ML_BLOCK_LOCAL_IP=false)?")


def _webhook(ls: LabelStudioClient, pid: int, url: str, token: str, steps: list[Step]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    good = None
    for hook in ls.listing("/api/webhooks/", project=pid):
        if not _same_url(hook.get("url"), url):
            continue
        right = (hook.get("headers") == headers and not hook.get("send_for_all_actions")
                 and sorted(hook.get("actions") or []) == sorted(WEBHOOK_ACTIONS) and hook.get("is_active"))
        if right and good is None:
            good = hook
            continue
        ls.delete(f"/api/webhooks/{hook['id']}/")
        why = "no Authorization header" if not hook.get("headers") else "not segpipe's settings"
        steps.append(Step("webhook", "removed", f"#{hook['id']} {url} ({why}: segpipe would refuse every event)"))
    if good is not None:
        steps.append(Step("webhook", "unchanged", f"#{good['id']} {url} with auth, {', '.join(WEBHOOK_ACTIONS)}"))
        return
    hook = ls.post("/api/webhooks/", json={"project": pid, "url": url, "send_payload": True,
                                           "send_for_all_actions": False, "actions": list(WEBHOOK_ACTIONS),
                                           "headers": headers, "is_active": True})
    steps.append(Step("webhook", "created", f"#{hook['id']} {url} with auth, {', '.join(WEBHOOK_ACTIONS)}"))


def image_url_prefix(local_files: str, document_root: str | None) -> str | None:
    """``/data/local-files/?d=REL/`` for a folder under Label Studio's document root, else None."""
    if not document_root:
        return None
    folder, root = PurePosixPath(local_files), PurePosixPath(document_root)
    try:
        relative = folder.relative_to(root)
    except ValueError:
        raise ConfigError(f"--local-files {local_files} is not under Label Studio's document root {document_root} "
                          "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT): Label Studio would not serve it") from None
    rel = relative.as_posix()
    return "/data/local-files/?d=" + ("" if rel == "." else rel + "/")


def _storage(ls: LabelStudioClient, pid: int, path: str, document_root: str | None, steps: list[Step]) -> str | None:
    prefix = image_url_prefix(path, document_root)
    for storage in ls.listing("/api/storages/localfiles", project=pid):
        if _same_url(storage.get("path"), path):
            steps.append(Step("storage", "unchanged", f"local files #{storage['id']} {path} (not synced)"))
            return prefix
    storage = ls.post("/api/storages/localfiles", json={
        "project": pid, "path": path, "title": "segpipe images", "use_blob_urls": True, "regex_filter": IMAGE_PATTERN,
    })  # fmt: skip
    steps.append(Step("storage", "created", f"local files #{storage['id']} {path} (not synced: import segpipe's "
                                            "tasks.json, or Sync only for images segpipe has not exported)"))
    return prefix
