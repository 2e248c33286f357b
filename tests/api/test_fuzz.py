"""The API fuzzed against its own OpenAPI document (schemathesis, every check, every operation) on PostgreSQL.

Bounded: a fixed number of generated requests per operation (positive and negative data, plus
schemathesis' coverage phase), so the whole run takes about a minute on two shared cores. What must
hold: no server error, every status code and content type declared, every response body matching its
schema, schema-invalid input refused and schema-valid input not refused for being schema-invalid.

One allowance, stated here: ``POST /jobs`` takes a job document whose meaning the schema cannot
carry (paths that must exist inside the data roots, registered model names), so a schema-valid
submission may still be refused with 403/413/422; and ``POST /uploads`` checks that each file is an
image by its bytes (415), which "format: binary" cannot say (and a one-file array mutated into a string
is the same body on the wire, so such a negative case is refused for its bytes: 415); and ``GET /jobs/{id}/export`` takes format
names that must fit the job's task and category ids that must be its model's (422 naming the options),
and answers 409 for a job that is not a predict job; so does ``GET /jobs/{id}/label-next`` as a file (409 too
for a job with no ranked image, 422 for a model whose classes cannot be read); ``POST /snapshots`` reads an archive that must lie
in the data roots, in a registered format (403/404/409/422); and ``POST /labelstudio/connect`` talks to
the configured Label Studio (403/422/502); for both, a schema-violating string long enough to pass the
body limit is refused with 413 before it is parsed. The other checks still apply to all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from segpipe.api.app import create_app
from segpipe.stores import Stores
from tests.api.conftest import ADMIN, _empty, box_mask, claimed_job, finish, make_settings, rows_for
from workers.celery_app import create_app as create_celery

pytestmark = [pytest.mark.integration]

MAX_EXAMPLES = int(os.environ.get("SEGPIPE_FUZZ_EXAMPLES", "40"))
CONFIG = schemathesis.Config.from_dict(
    {
        "headers": dict(ADMIN),
        "checks": {"enabled": True},
        "operations": [
            {
                "include-name": "POST /jobs",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "403", "413", "422"]}},
            },
            {  # an upload's content is checked (an image, by its bytes): the schema can only say "binary";
               # and a "files" mutated from an array of one file into one string is the same multipart body
               # on the wire: such a "schema-violating" case is refused for its bytes (415), as any non-image is
                "include-name": "POST /uploads",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "415"]},
                           "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "413",
                                                                              "415", "422"]}},
            },
            {  # formats must fit the job's task, categories must be its model's: the job decides, not the schema
                "include-name": "GET /jobs/{job_id}/export",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}},
            },
            {  # a file needs a predict job with ranked images and a model whose classes can be read: the job decides
                "include-name": "GET /jobs/{job_id}/label-next",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}},
            },
            {  # the source must be an archive inside the data roots and the format a registered one
                "include-name": "POST /snapshots",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "403", "404", "409", "422"]},
                           # a long enough string of escaped characters is past the body limit first: 413
                           "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "413",
                                                                              "422"]}},
            },
            {  # it talks to the configured Label Studio, which these tests do not run
                "include-name": "POST /labelstudio/connect",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "403", "422", "502"]},
                           "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "413",
                                                                              "422"]}},
            },
        ],
    }
)


def _operation_labels() -> list[str]:
    """Every operation of the document (read from an app on a throwaway SQLite store at collection)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        settings_ = make_settings(Path(tmp))
        stores = Stores.open(f"sqlite:///{tmp}/segpipe.db", Path(tmp) / "artifacts")
        try:
            loaded = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings_, stores, create_celery(settings_)))
            return sorted(result.ok().label for result in loaded.get_all_operations())
        finally:
            stores.close()


@pytest.fixture(scope="module")
def fuzzed_schema(api_pg_url, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app on PostgreSQL with something to find: a finished predict job with masks for image "a"."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    stores = Stores.open(api_pg_url, tmp_path / "artifacts")
    settings_ = make_settings(tmp_path)
    job_id = claimed_job(stores)
    stores.predictions.write_image(job_id, "a", rows_for([box_mask(2, 9, 3, 12)]), height=48, width=64)
    finish(stores, job_id)
    app = create_app(settings_, stores, create_celery(settings_))
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    _empty(stores)
    stores.close()


@pytest.mark.parametrize("label", _operation_labels())
def test_api_conforms_to_its_openapi_document(fuzzed_schema: Any, label: str) -> None:
    operation = fuzzed_schema.find_operation_by_label(label)
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate()

    fuzz()


def test_every_phase_of_the_engine_finds_nothing(fuzzed_schema: Any) -> None:
    """Schemathesis' own engine as its CLI runs it: examples, coverage (boundary values, unsupported
    methods with their ``Allow`` header, missing parameters), fuzzing and stateful links, bounded by
    ``max-time``. Every check; the same two stated allowances as above."""
    from schemathesis.engine import Status, from_schema
    from schemathesis.engine.events import FatalError, NonFatalError, ScenarioFinished

    fuzzed_schema.config.max_time = int(os.environ.get("SEGPIPE_FUZZ_SECONDS", "45"))
    failures: list[str] = []
    errors: list[str] = []
    scenarios = 0
    for event in from_schema(fuzzed_schema).execute():
        if isinstance(event, ScenarioFinished):
            scenarios += 1
            if event.status == Status.FAILURE:
                for checks in event.recorder.checks.values():
                    for check in checks:
                        if check.failure_info is not None:
                            failures.append(f"{event.label}: {check.name}: {check.failure_info.failure.title}\n"
                                            f"{check.failure_info.code_sample}")
        elif isinstance(event, (FatalError, NonFatalError)):
            errors.append(str(getattr(event, "info", event)))
    assert scenarios > 0
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    assert not errors, "\n".join(errors)
