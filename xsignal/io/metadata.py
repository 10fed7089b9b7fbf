"""``xsignal.metadata``: the file's metadata of an opened array as a dict."""

from __future__ import annotations

import json
from typing import Any

import xarray as xr


def metadata(da: xr.DataArray, *, original: bool = False) -> dict[str, Any]:
    """The metadata tree the array was read with, as a nested dict.

    HyperSpy files and rosettasciio formats keep HyperSpy's ``metadata``
    tree (``original=True``: the ``original_metadata`` tree, what the
    instrument wrote) as a JSON string in ``da.attrs``; this gives it back
    as a dict, empty when there is none. ``save`` to ``.hspy`` or ``.zspy``
    writes it back as HyperSpy's tree.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xsignal
    >>> da = xr.DataArray(np.zeros(3), attrs={
    ...     "metadata": '{"Acquisition_instrument": {"TEM": {"beam_energy": 200}}}'})
    >>> xsignal.metadata(da)["Acquisition_instrument"]["TEM"]["beam_energy"]
    200
    >>> xsignal.metadata(da, original=True)
    {}
    """
    text = da.attrs.get("original_metadata" if original else "metadata")
    if not text:
        return {}
    try:
        tree = json.loads(text) if isinstance(text, str) else text
    except ValueError as err:
        raise ValueError(f"attrs['metadata'] is not a JSON object: {err}") from err
    return tree if isinstance(tree, dict) else {}
