"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # it writes si.nc where it runs
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    spectrum, dec = namespace["spectrum"], namespace["dec"]
    assert spectrum.dims == ("energy",) and spectrum.notnull().all()
    assert dec.factors.sizes["component"] == 4
    assert namespace["image"].shape == (128, 128)
