"""``POST /labelstudio/connect``: the API door of ``segpipe labelstudio connect`` (see `segpipe.labelstudio.connect`).

Engineer role. segpipe talks only to the Label Studio it is configured with (``SEGPIPE_LABEL_STUDIO_URL``),
so a request cannot make the API contact another host; its token defaults to
``SEGPIPE_LABEL_STUDIO_TOKEN``. The token Label Studio will send back to segpipe defaults to the
caller's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from segpipe.api.auth import Principal, engineer, presented_token
from segpipe.api.deps import ApiContext, context
from segpipe.api.errors import ApiError
from segpipe.api.labelstudio.model_info import resolve_model
from segpipe.labelstudio.client import LabelStudioError
from segpipe.labelstudio.connect import ConnectRequest, ModelClasses, connect

router = APIRouter(prefix="/labelstudio", tags=["label studio"])


class ConnectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(max_length=200, description="NAME@production, NAME@latest or NAME@N")
    project: str = Field(max_length=200, description="a Label Studio project id, or a title (created if new)")
    label_studio_url: str | None = Field(None, max_length=2000, description="must be SEGPIPE_LABEL_STUDIO_URL")
    label_studio_token: str | None = Field(None, max_length=2000, description="default SEGPIPE_LABEL_STUDIO_TOKEN")
    segpipe_url: str | None = Field(None, max_length=2000, description="this API as Label Studio reaches it "
                                                                       "(default: the URL of this request)")
    segpipe_token: str | None = Field(None, max_length=500, description="what Label Studio sends to segpipe "
                                                                        "(default: the caller's token)")
    local_files: str | None = Field(None, max_length=4000, description="a folder as Label Studio sees it, under "
                                                                       "its LOCAL_FILES_DOCUMENT_ROOT")
    document_root: str | None = Field(None, max_length=4000, description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT "
                                                                         "(default SEGPIPE_LABEL_STUDIO_FILES_ROOT)")


@router.post("/connect")
def connect_project(
    body: ConnectIn, request: Request, ctx: ApiContext = Depends(context), _who: Principal = Depends(engineer)
) -> dict[str, Any]:
    """Create or update the project's labeling config, ML backend, webhook and storage; idempotent."""
    settings = ctx.settings
    configured = (settings.label_studio_url or "").rstrip("/")
    if not configured:
        raise ApiError(422, "SEGPIPE_LABEL_STUDIO_URL is not set: the API connects only the Label Studio it is "
                            "configured with (or run `segpipe labelstudio connect` from a terminal)")
    if body.label_studio_url and body.label_studio_url.rstrip("/") != configured:
        raise ApiError(403, f"label_studio_url {body.label_studio_url!r} is not the configured Label Studio "
                            f"({configured}); segpipe contacts no other host")
    token = body.label_studio_token or settings.label_studio_token
    if not token:
        raise ApiError(422, "label_studio_token: give one, or set SEGPIPE_LABEL_STUDIO_TOKEN")
    backend_token = body.segpipe_token or presented_token(request)
    if not backend_token:
        raise ApiError(422, "segpipe_token: give the token Label Studio should send to segpipe")
    model = resolve_model(ctx.stores, body.model)
    files_root = body.document_root or (str(settings.label_studio_files_root) if settings.label_studio_files_root else None)
    plan = ConnectRequest(
        label_studio_url=configured, label_studio_token=token,
        model=ModelClasses(body.model, model.task, model.categories, model.label),
        segpipe_url=body.segpipe_url or str(request.base_url), segpipe_token=backend_token, project=body.project,
        local_files=body.local_files, document_root=files_root,
    )  # fmt: skip
    try:
        return connect(plan).to_dict()
    except LabelStudioError as e:
        raise ApiError(502, str(e), detail={"label_studio_status": e.status_code}) from None
