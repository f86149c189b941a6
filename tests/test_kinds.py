"""Every generation of kind URI maps to the 2026 ExecutionBroker v1.0 URI; unknown kinds are kept."""

from __future__ import annotations

import pytest

from execplanner_widgets.model.kinds import canonical_kind, is_known, kind_uri, short_kind

NOTEBOOK_2026 = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml"


@pytest.mark.parametrize(
    "written",
    [
        "jupyter-notebook",
        "Jupyter-Notebook",
        "uri://jupyter-notebook",
        "purl:jupyter-notebook",
        "https://purl.org/esap.escape.eu/task-type/jupyter-notebook",
        "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/executable/jupyter-notebook-1.0",
        NOTEBOOK_2026,
    ],
)
def test_all_spellings_of_a_notebook_are_one_kind(written):
    assert canonical_kind(written, "executable") == NOTEBOOK_2026
    assert short_kind(written) == "jupyter-notebook"


def test_docker_2021_and_data_kinds():
    assert canonical_kind("uri://docker-container") == kind_uri("executable", "docker-container")
    assert canonical_kind(
        "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/data/S3-data-resource-1.0", "data"
    ) == kind_uri("data", "S3-data-resource")


def test_unknown_kinds_are_kept_verbatim():
    assert canonical_kind("uri://kubernetes-helm") == "uri://kubernetes-helm"
    assert canonical_kind("https://example.org/kinds/magic") == "https://example.org/kinds/magic"
    assert not is_known("uri://kubernetes-helm", "executable")


def test_a_kind_of_another_category_is_not_taken():
    # a data kind given where an executable is expected stays as written: the platform says NO
    assert canonical_kind("simple-data-resource", "executable") == "simple-data-resource"
    assert is_known("simple-data-resource", "data")


def test_a_canonical_uri_is_its_own_canonical_form_in_every_category():
    # canonical_kind answers these without parsing: that is right only if parsing would give them back
    from execplanner_widgets.model.kinds import KNOWN_KINDS, _canonical

    uris = [kind_uri(category, short) for category, shorts in KNOWN_KINDS.items() for short in shorts]
    for uri in uris:
        for category in [*KNOWN_KINDS, None]:
            assert _canonical(uri, category) == uri
            assert canonical_kind(uri, category) == uri
