"""The ``.signal`` accessor is a thin shell: every method is its function.

Each accessor method names its function in its docstring ("Call
:func:`xsignal.X` on this DataArray."); these tests hold the two to the same
parameters (names, kinds, defaults) and check that every argument reaches the
function, so that an argument added to a function and forgotten on the
accessor (as ``blocks(prefetch=)`` once was) fails here.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import xarray as xr

import xsignal
from xsignal.accessor import SignalAccessor
from xsignal.testing import raise_if_dask_computes

FUNC = re.compile(r":func:`(xsignal(?:\.\w+)+)`")


def _resolve(dotted: str) -> Any:
    obj: Any = xsignal
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _methods() -> dict[str, Callable]:
    return {
        name: member
        for name, member in vars(SignalAccessor).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def _properties() -> dict[str, property]:
    return {
        name: member
        for name, member in vars(SignalAccessor).items()
        if isinstance(member, property)
    }


def _target(member: Any) -> Callable:
    """The public function an accessor member's docstring names first."""
    found = FUNC.search(inspect.getdoc(member) or "")
    assert found, f"{member!r} does not name its function (:func:`xsignal....`)"
    return _resolve(found.group(1))


METHODS = _methods()


def _shape(params: list[inspect.Parameter]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in params]


def test_every_method_names_its_public_function():
    assert METHODS  # the collection itself works
    for member in [*METHODS.values(), *_properties().values()]:
        assert callable(_target(member))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_signature_is_its_function_without_the_dataarray(name):
    method, function = METHODS[name], _target(METHODS[name])
    self_, *method_params = inspect.signature(method).parameters.values()
    da, *function_params = inspect.signature(function).parameters.values()
    assert self_.name == "self"
    # the DataArray first, or as the one array of a function of several
    # (``xsignal.plan(*arrays)``)
    assert da.kind in (da.POSITIONAL_OR_KEYWORD, da.VAR_POSITIONAL)
    assert _shape(method_params) == _shape(function_params)


@pytest.mark.parametrize("name", sorted(_properties()))
def test_property_is_a_function_of_the_dataarray_alone(name):
    function = _target(_properties()[name])
    (param,) = inspect.signature(function).parameters.values()
    da = xr.DataArray(np.zeros((2, 3)), dims=("x", "energy"))
    assert getattr(da.signal, name) == function(da)


class _Token:
    """A distinct argument value, to see where each argument arrives."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _spy(monkeypatch: pytest.MonkeyPatch, function: Callable) -> list:
    """Replace ``function`` wherever an xsignal module holds it; record calls."""
    calls: list = []
    signature = inspect.signature(function)

    def spy(*args: Any, **kwargs: Any) -> str:
        calls.append(signature.bind(*args, **kwargs).arguments)
        return "result"

    for module_name, module in list(sys.modules.items()):
        if module_name == "xsignal" or module_name.startswith("xsignal."):
            for attr, value in list(vars(module).items()):
                if value is function:
                    monkeypatch.setattr(module, attr, spy)
    return calls


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_passes_every_argument_to_its_function(name, monkeypatch):
    method, function = METHODS[name], _target(METHODS[name])
    da = xr.DataArray(np.zeros((2, 3)), dims=("x", "energy"))
    da_param = next(iter(inspect.signature(function).parameters.values()))
    given = (da,) if da_param.kind is da_param.VAR_POSITIONAL else da
    args, kwargs, want = [], {}, {da_param.name: given}
    for param in list(inspect.signature(method).parameters.values())[1:]:
        token = _Token(param.name)
        if param.kind is param.VAR_POSITIONAL:
            args.append(token)
            want[param.name] = (token,)
        elif param.kind is param.VAR_KEYWORD:
            kwargs["extra_keyword"] = token
            want[param.name] = {"extra_keyword": token}
        elif param.kind is param.POSITIONAL_ONLY:
            args.append(token)
            want[param.name] = token
        else:
            kwargs[param.name] = token
            want[param.name] = token
    calls = _spy(monkeypatch, function)
    assert getattr(da.signal, name)(*args, **kwargs) == "result"
    assert calls == [want]


# --- what the shell must not lose ----------------------------------------------


def test_blocks_takes_prefetch(backend):
    da = xsignal.testing.spectrum_image((6, 5, 8), rank=2, seed=0).data
    if backend == "dask":
        da = da.chunk({"y": 2})
    got = list(da.signal.blocks(prefetch=2))
    want = list(xsignal.blocks(da, prefetch=2))
    assert [where for where, _ in got] == [where for where, _ in want]
    for (_, a), (_, b) in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_reductions_read_nothing_until_computed():
    lazy = xsignal.testing.spectrum_image((6, 5, 8), rank=2, seed=0).data.chunk(
        {"y": 2}
    )
    with raise_if_dask_computes():
        image = lazy.signal.nansum(dim="signal", keep_attrs=False)
        spectrum = lazy.signal.mean(dims="navigation")
    assert image.signal.navigation_dims == ("y", "x")
    assert spectrum.signal.signal_dims == ("energy",)
