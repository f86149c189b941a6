"""model/phases.py: the one place that knows session phases, their groups, moves, UWS names and expiry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from execplanner_widgets.model import identifiers, phases
from execplanner_widgets.model.errors import InvalidRequest
from execplanner_widgets.model.phases import SessionPhase as P
from execplanner_widgets.model.phases import UwsPhase as U

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def test_every_phase_is_in_exactly_one_lifecycle_group():
    groups = [phases.OFFERED_PHASES, phases.QUEUED_PHASES, phases.RUNNING_PHASES, phases.FINAL_PHASES]
    for phase in P:
        if phase is P.INITIAL:
            assert not any(phase in group for group in groups)
        else:
            assert sum(phase in group for group in groups) == 1, phase
    assert phases.ACTIVE_PHASES == phases.QUEUED_PHASES | phases.RUNNING_PHASES
    assert phases.FINAL_PHASES == phases.RELEASED_PHASES | phases.FINISHED_PHASES


def test_final_phases_go_nowhere_and_every_other_phase_can_end():
    for phase in phases.FINAL_PHASES:
        assert phases.TRANSITIONS[phase] == frozenset()
    for phase in set(P) - phases.FINAL_PHASES:
        assert phases.TRANSITIONS[phase] & phases.FINAL_PHASES, phase
    assert set(phases.TRANSITIONS) == set(P)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        ("OFFERED", "ACCEPTED", True),
        ("OFFERED", "EXPIRED", True),
        ("OFFERED", "RUNNING", False),
        ("EXPIRED", "ACCEPTED", False),
        ("COMPLETED", "RUNNING", False),
        ("WAITING", "OFFERED", False),
        ("RUNNING", "COMPLETED", True),
        ("ACCEPTED", "CANCELLED", True),
        ("PREPARING", "WAITING", True),  # the engine queues the staged job (Slurm PENDING)
        ("RUNNING", "WAITING", True),  # the engine requeued it
        ("RELEASING", "WAITING", False),
        ("WAITING", "RELEASING", True),  # a short job the engine ran between two looks
    ],
)
def test_allowed_moves(current, target, allowed):
    assert phases.can_move(current, target) is allowed


def test_uws_mapping_follows_the_table():
    assert phases.uws_phase(P.WAITING) is U.QUEUED
    assert phases.uws_phase("RUNNING") is U.EXECUTING
    assert phases.uws_phase(P.FAILED) is U.ERROR
    assert phases.uws_phase(P.CANCELLED) is U.ABORTED
    assert phases.uws_phase(P.COMPLETED, destroyed=True) is U.ARCHIVED
    assert phases.uws_phase(P.RUNNING, destroyed=True) is U.EXECUTING  # only a finished job is archived
    assert phases.uws_phase(P.OFFERED) is U.UNKNOWN  # an offer is no job
    for phase in phases.FINAL_PHASES - phases.RELEASED_PHASES:
        assert phases.uws_phase(phase) in phases.FINAL_UWS_PHASES
    for phase in phases.ACTIVE_PHASES:
        assert phases.uws_phase(phase) in phases.ACTIVE_UWS_PHASES
    assert "COMPLETED" in phases.FINAL_UWS_PHASES  # the wire's strings are found too


def test_offer_expiry_is_at_or_after_its_time():
    assert phases.offer_expired(NOW, NOW)
    assert phases.offer_expired(NOW - timedelta(seconds=1), NOW)
    assert not phases.offer_expired(NOW + timedelta(microseconds=1), NOW)
    assert not phases.offer_expired(None, NOW)


def test_offer_expiry_of_a_row_or_document_needs_an_open_offer():
    assert phases.offer_expired(SimpleNamespace(phase="OFFERED", expires=NOW), NOW)
    assert not phases.offer_expired(SimpleNamespace(phase=P.ACCEPTED, expires=NOW), NOW)
    assert not phases.offer_expired(SimpleNamespace(phase="OFFERED", expires=None), NOW)
    assert phases.effective_phase("OFFERED", NOW, NOW) is P.EXPIRED
    assert phases.effective_phase("OFFERED", NOW + timedelta(seconds=1), NOW) is P.OFFERED
    assert phases.effective_phase("RUNNING", NOW, NOW) is P.RUNNING


def test_values_are_sorted_strings_for_sql():
    assert phases.values(phases.QUEUED_PHASES) == ("ACCEPTED", "WAITING")


@pytest.mark.parametrize("value", ["0f8fad5b-d9cb-469f-a165-70867728950e", "job_1", "A" * 128])
def test_plain_identifiers_pass(value):
    assert identifiers.check_identifier(value, "uuid") == value


@pytest.mark.parametrize(
    "value", ["", "../etc", "a/b", "a.b", "%2e", "a@b", "a:b", "-x", "A" * 129, "é", "abc\n", "a b"]
)
def test_identifiers_that_could_change_a_path_are_refused_naming_the_field(value):
    with pytest.raises(InvalidRequest) as caught:
        identifiers.check_identifier(value, "uuid")
    assert caught.value.errors[0].field == "uuid"


def test_a_non_string_identifier_is_refused_not_a_crash():
    with pytest.raises(InvalidRequest):
        identifiers.check_identifier(None, "id")  # type: ignore[arg-type]
