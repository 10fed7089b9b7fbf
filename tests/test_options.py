"""xsignal.set_options as a setter and a context manager."""

from __future__ import annotations

import pytest

import xsignal


def test_set_options_as_context_manager_restores():
    before = xsignal.get_options()
    with xsignal.set_options(progress=True, max_tasks=5):
        assert xsignal.get_options()["progress"] is True
        assert xsignal.get_options()["max_tasks"] == 5
    assert xsignal.get_options() == before


def test_set_options_as_setter():
    before = xsignal.get_options()["progress_delay"]
    try:
        xsignal.set_options(progress_delay=2.5)
        assert xsignal.get_options()["progress_delay"] == 2.5
    finally:
        xsignal.set_options(progress_delay=before)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"colour": 1}, "not an xsignal option"),
        ({"progress": "yes"}, "invalid value"),
        ({"max_tasks": -1}, "invalid value"),
    ],
)
def test_set_options_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        xsignal.set_options(**kwargs)
