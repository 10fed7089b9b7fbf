# ruff: noqa: E501  (the key table and the recorded calls are long lines)
"""Reference fits of HyperSpy 2.5 ``create_model`` / ``multifit`` (issue 25).

Writes ``fitting.npz`` next to this file: small synthetic spectrum images with
known truth and what HyperSpy 2.5's ``multifit`` returns for them, for the
tests of shared/API.md "Model fitting".  HyperSpy needs its own virtualenv, so
the script runs in two parts (see README.md):

    python make_fitting.py            # driver: any Python with numpy
        -> makes the inputs, then runs
           $XS_HS_PYTHON make_fitting.py --part hyperspy IN OUT   (default /work/hs-venv/bin/python)
        -> merges everything into fitting.npz

Every array is plain numpy (``np.load(path)``, no pickle).  Three keys hold
JSON text (0-d unicode arrays, read with ``json.loads(str(d["calls"]))``):
``calls`` {output key (or key prefix): the exact HyperSpy calls},
``notes`` {topic: conventions and surprises}, ``versions``.

Every case is 8 x 10 pixels (nav (y, x), HyperSpy's ``inav[x, y]``) x 300
channels, Poisson counts stored as ``uint16`` (HyperSpy gets them as float64),
the signal axis NOT binned (``is_binned = False``: the model is not scaled by
the channel width, so HyperSpy's and xsignal's parameters mean the same).
Parameter keys are xsignal's: ``"<component>.<parameter>"``, a repeated
component ``Gaussian_2`` (HyperSpy names it ``Gaussian_0``).

Inputs (``<case>`` in a, b, c, d)
---------------------------------
``<case>_data``       (8, 10, 300) uint16 counts
``<case>_axis``       [offset, scale, size] of the signal axis (units eV)
``<case>_truth__<key>`` (8, 10) the true parameter of every pixel (the mean of
                      the Poisson counts is the model at the truth)

``a``  two Gaussians + Offset, axis 10 + 0.25 i (10 ... 84.75): Gaussian
       (A 800-1200, centre 40 +- 0.5, sigma 3 +- 0.1), Gaussian_2 (A 300-600,
       centre 62 +- 0.5, sigma 2 +- 0.1), Offset 20.
``b``  Lorentzian (A 1500-2500, centre 50 +- 0.5, gamma 2.5 +- 0.1) + Offset 20,
       same axis.
``c``  EELS-like: PowerLaw (r 2.8-3.2, A = 2e4 * 300**r * U(0.8, 1.2), i.e.
       ~2e4 counts at 300 eV; origin 0, fixed) + Gaussian (A 2000-4000,
       centre 400 +- 0.5, sigma 4 +- 0.1), axis 300 + 0.5 i (300 ... 449.5).
``d``  the linear case: Gaussian (centre 40, sigma 3), Gaussian_2 (centre 62,
       sigma 2), the same in every pixel and fixed in the fit, + Offset; free:
       Gaussian.A 800-1200, Gaussian_2.A 300-600, Offset.offset 15-25.  Axis as a.

HyperSpy outputs (``<fit>`` per case: ``lm`` unweighted; ``lm_var`` with
``s.estimate_poissonian_noise_variance()`` first; for d ``lstsq`` and ``lstsq_var``)
----------------------------------------------------------------------------------
``<case>_<fit>__<key>``        (8, 10) ``comp.<param>.map["values"]`` after multifit
``<case>_<fit>__<key>__std``   (8, 10) ``comp.<param>.map["std"]`` (fixed parameters: NaN)
``<case>_<fit>__chisq``        (8, 10) ``m.chisq.data`` (weighted by 1/variance when set)
``<case>_<fit>__red_chisq``    (8, 10) ``m.red_chisq.data`` = chisq / (n - dof - 1)
``<case>_<fit>__dof``          (8, 10) ``m.dof.data`` (the number of free parameters)
``<case>_start__<key>``        (8, 10) the start values HyperSpy's ``estimate_parameters``
                               set in every pixel (where a start was estimated), for
                               ``initial=`` in xsignal
``defs_x``                     (300,) a coordinate for the definitions below
``defs__<name>``               (300,) ``comp.function(defs_x)`` of one HyperSpy component
                               with the parameters in ``calls["defs__<name>"]``: Gaussian,
                               Lorentzian, Offset, PowerLaw (origin 0), PowerLaw_origin_neg
                               (origin -10), PowerLaw_origin_pos (origin +10: NaN between
                               0 and 10, see notes)

Starts: a, b from HyperSpy's ``estimate_parameters`` on a window around each
peak (``only_current=False``: every pixel its own start); c: PowerLaw from
its estimate, the Gaussian from centre 400, sigma 4, A 3000 (later pixels
start from the previous pixel's result); d: linear, no start.  ``notes``
says why (starting from the centres alone fails).
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fitting.npz")
HS_PYTHON = os.environ.get("XS_HS_PYTHON", "/work/hs-venv/bin/python")

SHAPE = (8, 10)
N = 300
AXES = {
    "a": (10.0, 0.25, N),
    "b": (10.0, 0.25, N),
    "c": (300.0, 0.5, N),
    "d": (10.0, 0.25, N),
}
SQRT2PI = np.sqrt(2 * np.pi)


# ----------------------------------------------------------------- inputs
def coordinate(case):
    offset, scale, size = AXES[case]
    return offset + scale * np.arange(size)


def gaussian(x, A, centre, sigma):
    z = (x - centre[..., None]) / sigma[..., None]
    return A[..., None] / (sigma[..., None] * SQRT2PI) * np.exp(-0.5 * z * z)


def lorentzian(x, A, centre, gamma):
    d = x - centre[..., None]
    return A[..., None] / np.pi * gamma[..., None] / (d * d + gamma[..., None] ** 2)


def make_inputs():
    out = {}
    rng = np.random.default_rng(25)
    full = np.full

    def store(case, truth, clean):
        out[f"{case}_data"] = rng.poisson(clean).astype(np.uint16)
        out[f"{case}_axis"] = np.array(AXES[case], dtype=np.float64)
        for key, value in truth.items():
            out[f"{case}_truth__{key}"] = np.broadcast_to(value, SHAPE).astype(
                np.float64
            )

    x = coordinate("a")
    t = {
        "Gaussian.A": rng.uniform(800, 1200, SHAPE),
        "Gaussian.centre": 40 + rng.normal(0, 0.5, SHAPE),
        "Gaussian.sigma": 3.0 + rng.normal(0, 0.1, SHAPE),
        "Gaussian_2.A": rng.uniform(300, 600, SHAPE),
        "Gaussian_2.centre": 62 + rng.normal(0, 0.5, SHAPE),
        "Gaussian_2.sigma": 2.0 + rng.normal(0, 0.1, SHAPE),
        "Offset.offset": full(SHAPE, 20.0),
    }
    clean = (
        gaussian(x, t["Gaussian.A"], t["Gaussian.centre"], t["Gaussian.sigma"])
        + gaussian(x, t["Gaussian_2.A"], t["Gaussian_2.centre"], t["Gaussian_2.sigma"])
        + t["Offset.offset"][..., None]
    )
    store("a", t, clean)

    x = coordinate("b")
    t = {
        "Lorentzian.A": rng.uniform(1500, 2500, SHAPE),
        "Lorentzian.centre": 50 + rng.normal(0, 0.5, SHAPE),
        "Lorentzian.gamma": 2.5 + rng.normal(0, 0.1, SHAPE),
        "Offset.offset": full(SHAPE, 20.0),
    }
    clean = (
        lorentzian(x, t["Lorentzian.A"], t["Lorentzian.centre"], t["Lorentzian.gamma"])
        + t["Offset.offset"][..., None]
    )
    store("b", t, clean)

    x = coordinate("c")
    r = rng.uniform(2.8, 3.2, SHAPE)
    t = {
        "PowerLaw.A": 2.0e4 * 300.0**r * rng.uniform(0.8, 1.2, SHAPE),
        "PowerLaw.r": r,
        "PowerLaw.origin": full(SHAPE, 0.0),
        "Gaussian.A": rng.uniform(2000, 4000, SHAPE),
        "Gaussian.centre": 400 + rng.normal(0, 0.5, SHAPE),
        "Gaussian.sigma": 4.0 + rng.normal(0, 0.1, SHAPE),
    }
    clean = t["PowerLaw.A"][..., None] * x ** -t["PowerLaw.r"][..., None] + gaussian(
        x, t["Gaussian.A"], t["Gaussian.centre"], t["Gaussian.sigma"]
    )
    store("c", t, clean)

    x = coordinate("d")
    t = {
        "Gaussian.A": rng.uniform(800, 1200, SHAPE),
        "Gaussian.centre": full(SHAPE, 40.0),
        "Gaussian.sigma": full(SHAPE, 3.0),
        "Gaussian_2.A": rng.uniform(300, 600, SHAPE),
        "Gaussian_2.centre": full(SHAPE, 62.0),
        "Gaussian_2.sigma": full(SHAPE, 2.0),
        "Offset.offset": rng.uniform(15, 25, SHAPE),
    }
    clean = (
        gaussian(x, t["Gaussian.A"], t["Gaussian.centre"], t["Gaussian.sigma"])
        + gaussian(x, t["Gaussian_2.A"], t["Gaussian_2.centre"], t["Gaussian_2.sigma"])
        + t["Offset.offset"][..., None]
    )
    store("d", t, clean)
    out["defs_x"] = np.linspace(-20.0, 130.0, N)
    return out


# ---------------------------------------------------------------- HyperSpy
def part_hyperspy(inp):
    import logging

    import hyperspy
    import hyperspy.api as hs
    import scipy

    logging.getLogger("hyperspy").setLevel(logging.ERROR)
    C = hs.model.components1D
    res, calls, notes = {}, {}, {}
    versions = {
        "hyperspy": hyperspy.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }

    def signal(case, weighted):
        offset, scale, _ = inp[f"{case}_axis"]
        s = hs.signals.Signal1D(inp[f"{case}_data"].astype(np.float64))
        ax = s.axes_manager.signal_axes[0]
        ax.offset, ax.scale, ax.units, ax.name = offset, scale, "eV", "Energy"
        ax.is_binned = False
        if weighted:
            s.estimate_poissonian_noise_variance()
        return s

    def store(case, fit, m, comps):
        """comps: {xsignal name: HyperSpy component}."""
        for name, comp in comps.items():
            for p in comp.parameters:
                if name == "PowerLaw" and p.name == "left_cutoff":
                    continue
                key = f"{case}_{fit}__{name}.{p.name}"
                res[key] = np.array(p.map["values"], dtype=np.float64)
                std = np.array(p.map["std"], dtype=np.float64)
                res[key + "__std"] = std if p.free else np.full_like(std, np.nan)
        res[f"{case}_{fit}__chisq"] = np.asarray(m.chisq.data, dtype=np.float64)
        res[f"{case}_{fit}__red_chisq"] = np.asarray(m.red_chisq.data, dtype=np.float64)
        res[f"{case}_{fit}__dof"] = np.asarray(m.dof.data, dtype=np.float64)

    def starts(case, comps):
        for name, comp in comps.items():
            for p in comp.parameters:
                if p.map["is_set"].all() and p.free:
                    res[f"{case}_start__{name}.{p.name}"] = np.array(
                        p.map["values"], dtype=np.float64
                    )

    prelude = (
        "s = hs.signals.Signal1D(data.astype(float)); ax = s.axes_manager.signal_axes[0]; "
        "ax.offset, ax.scale = {off}, {scale}; ax.is_binned = False"
    )

    # a: two Gaussians + Offset
    for fit, weighted in (("lm", False), ("lm_var", True)):
        s = signal("a", weighted)
        m = s.create_model()
        g1, g2, o = C.Gaussian(), C.Gaussian(), C.Offset()
        m.extend([g1, g2, o])
        g1.estimate_parameters(s, 30.0, 50.0, only_current=False)
        g2.estimate_parameters(s, 55.0, 70.0, only_current=False)
        comps = {"Gaussian": g1, "Gaussian_2": g2, "Offset": o}
        starts("a", comps)
        m.multifit(show_progressbar=False)
        store("a", fit, m, comps)
        calls[f"a_{fit}"] = "; ".join(
            [
                prelude.format(off=10.0, scale=0.25),
                *(["s.estimate_poissonian_noise_variance()"] if weighted else []),
                "m = s.create_model(); g1, g2, o = Gaussian(), Gaussian(), Offset(); m.extend([g1, g2, o])  # names Gaussian, Gaussian_0, Offset",
                "g1.estimate_parameters(s, 30.0, 50.0, only_current=False)",
                "g2.estimate_parameters(s, 55.0, 70.0, only_current=False)",
                "m.multifit(show_progressbar=False)  # optimizer='lm', grad='fd'",
            ]
        )
    calls["a_start"] = (
        "g1/g2 .A/.centre/.sigma .map['values'] after the estimate_parameters calls of a_lm"
    )

    # the same from the centres alone (what a user tries first): a note, not stored
    found = []
    for weighted in (False, True):
        s = signal("a", weighted)
        m = s.create_model()
        g1, g2, o = C.Gaussian(), C.Gaussian(), C.Offset()
        m.extend([g1, g2, o])
        g1.centre.value, g2.centre.value = 40.0, 62.0
        m.multifit(show_progressbar=False)
        ok = np.abs(g2.centre.map["values"] - inp["a_truth__Gaussian_2.centre"]) < 1.0
        found.append(f"{'weighted' if weighted else 'unweighted'}: {ok.mean():.0%}")
    notes["a_from_centres_alone"] = (
        "multifit from g1.centre.value = 40, g2.centre.value = 62 only (A = sigma = 1, "
        "offset 0, each pixel starting from the previous pixel's result) fails: pixels with "
        "Gaussian_2.centre within 1 of the truth: "
        + ", ".join(found)
        + ". The references therefore start from estimate_parameters over a window "
        "around each peak (every pixel its own start, stored as a_start__*)."
    )

    # b: Lorentzian + Offset
    for fit, weighted in (("lm", False), ("lm_var", True)):
        s = signal("b", weighted)
        m = s.create_model()
        lz, o = C.Lorentzian(), C.Offset()
        m.extend([lz, o])
        o.estimate_parameters(s, 10.0, 25.0, only_current=False)
        lz.estimate_parameters(s, 35.0, 65.0, only_current=False)
        comps = {"Lorentzian": lz, "Offset": o}
        starts("b", comps)
        m.multifit(show_progressbar=False)
        store("b", fit, m, comps)
        calls[f"b_{fit}"] = "; ".join(
            [
                prelude.format(off=10.0, scale=0.25),
                *(["s.estimate_poissonian_noise_variance()"] if weighted else []),
                "m = s.create_model(); lz, o = Lorentzian(), Offset(); m.extend([lz, o])",
                "o.estimate_parameters(s, 10.0, 25.0, only_current=False)",
                "lz.estimate_parameters(s, 35.0, 65.0, only_current=False)",
                "m.multifit(show_progressbar=False)",
            ]
        )
    calls["b_start"] = "the .map['values'] after the estimate_parameters calls of b_lm"

    # c: PowerLaw + Gaussian (EELS-like)
    for fit, weighted in (("lm", False), ("lm_var", True)):
        s = signal("c", weighted)
        m = s.create_model()
        pl, g = C.PowerLaw(), C.Gaussian()
        m.extend([pl, g])
        pl.estimate_parameters(s, 300.0, 370.0, only_current=False)
        g.centre.value, g.sigma.value, g.A.value = 400.0, 4.0, 3000.0
        comps = {"PowerLaw": pl, "Gaussian": g}
        starts("c", comps)
        m.multifit(show_progressbar=False)
        store("c", fit, m, comps)
        calls[f"c_{fit}"] = "; ".join(
            [
                prelude.format(off=300.0, scale=0.5),
                *(["s.estimate_poissonian_noise_variance()"] if weighted else []),
                "m = s.create_model(); pl, g = PowerLaw(), Gaussian(); m.extend([pl, g])  # origin 0 and left_cutoff 0 fixed",
                "pl.estimate_parameters(s, 300.0, 370.0, only_current=False)",
                "g.centre.value, g.sigma.value, g.A.value = 400.0, 4.0, 3000.0  # one start; later pixels start from the previous pixel's result",
                "m.multifit(show_progressbar=False)",
            ]
        )
    calls["c_start"] = "pl.A/pl.r .map['values'] after pl.estimate_parameters of c_lm"
    # the Gaussian started from its estimate instead: a note, not stored
    found = []
    for weighted in (False, True):
        s = signal("c", weighted)
        m = s.create_model()
        pl, g = C.PowerLaw(), C.Gaussian()
        m.extend([pl, g])
        pl.estimate_parameters(s, 300.0, 370.0, only_current=False)
        g.estimate_parameters(s, 385.0, 415.0, only_current=False)
        m.multifit(show_progressbar=False)
        best = res[f"c_{'lm_var' if weighted else 'lm'}__chisq"]
        flipped = g.sigma.map["values"] < 0
        found.append(
            f"{'weighted' if weighted else 'unweighted'}: {int(flipped.sum())} of 80 pixels end "
            f"with sigma < 0 and A < 0 (the same curve: A / sigma), chisq above the stored fit's by more than 1e-6 of it "
            f"in {int((m.chisq.data - best > 1e-6 * best).sum())} pixel(s)"
        )
    notes["c_gaussian_from_estimate"] = (
        "g.estimate_parameters(s, 385.0, 415.0, only_current=False) counts the background "
        "under the peak (A starts ~2e5, sigma ~8.6); multifit (no bounds) then lands on the "
        "mirror solution in some pixels: "
        + "; ".join(found)
        + ". The references start the Gaussian from the values a user reads off the "
        "spectrum (centre 400, sigma 4, A 3000), which converges everywhere."
    )

    # d: linear, centres and sigmas fixed
    for fit, weighted in (("lstsq", False), ("lstsq_var", True)):
        s = signal("d", weighted)
        m = s.create_model()
        g1, g2, o = C.Gaussian(), C.Gaussian(), C.Offset()
        m.extend([g1, g2, o])
        for g, centre, sigma in ((g1, 40.0, 3.0), (g2, 62.0, 2.0)):
            g.centre.value, g.sigma.value = centre, sigma
            g.centre.free = g.sigma.free = False
        m.multifit(optimizer="lstsq", calculate_errors=True, show_progressbar=False)
        store("d", fit, m, {"Gaussian": g1, "Gaussian_2": g2, "Offset": o})
        calls[f"d_{fit}"] = "; ".join(
            [
                prelude.format(off=10.0, scale=0.25),
                *(["s.estimate_poissonian_noise_variance()"] if weighted else []),
                "m = s.create_model(); g1, g2, o = Gaussian(), Gaussian(), Offset(); m.extend([g1, g2, o])",
                "g1.centre.value, g1.sigma.value = 40.0, 3.0; g2.centre.value, g2.sigma.value = 62.0, 2.0",
                "g1.centre.free = g1.sigma.free = g2.centre.free = g2.sigma.free = False",
                "m.multifit(optimizer='lstsq', calculate_errors=True, show_progressbar=False)"
                + (
                    "  # a variance per pixel: HyperSpy warns and loops over the pixels"
                    if weighted
                    else "  # vectorized: one lstsq for all pixels"
                ),
            ]
        )
    filled = np.isfinite(res["d_lstsq__chisq"])
    notes["d_lstsq_chisq"] = (
        f"the vectorized lstsq multifit fills m.chisq, m.red_chisq and m.dof only at "
        f"{int(filled.sum())} pixel(s) {np.argwhere(filled).tolist()} (the current "
        "index); the rest are NaN (d_lstsq__chisq, __red_chisq) or 0 (__dof). The "
        "weighted one (a pixel loop) fills them everywhere."
    )

    # the components' definitions, evaluated by HyperSpy
    x = inp["defs_x"]
    defs = {
        "Gaussian": (C.Gaussian, dict(A=1000.0, centre=40.0, sigma=3.0)),
        "Lorentzian": (C.Lorentzian, dict(A=1000.0, centre=40.0, gamma=2.5)),
        "PowerLaw": (C.PowerLaw, dict(A=1.0e6, r=2.5, origin=0.0)),
        "PowerLaw_origin_neg": (C.PowerLaw, dict(A=1.0e6, r=2.5, origin=-10.0)),
        "PowerLaw_origin_pos": (C.PowerLaw, dict(A=1.0e6, r=2.5, origin=10.0)),
        "Offset": (C.Offset, dict(offset=7.5)),
    }
    for name, (kind, params) in defs.items():
        comp = kind()
        for key, value in params.items():
            getattr(comp, key).value = value
        with np.errstate(all="ignore"):
            res[f"defs__{name}"] = np.asarray(comp.function(x), dtype=np.float64)
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        calls[f"defs__{name}"] = (
            f"c = {kind.__name__}(); c.{args.replace(', ', '; c.')}; c.function(defs_x)"
        )
    neg, pos = res["defs__PowerLaw_origin_neg"], res["defs__PowerLaw_origin_pos"]
    notes["powerlaw_cutoff"] = (
        "HyperSpy's PowerLaw is where(left_cutoff < x, A*(x - origin)**-r, 0), left_cutoff a "
        "fixed parameter (default 0) apart from origin. origin=-10: 0 for x <= 0 "
        f"({int((neg[x <= 0] == 0).sum())} of {int((x <= 0).sum())} channels), not for "
        "x <= -10 only; origin=+10: NaN for 0 < x < 10 "
        f"({int(np.isnan(pos[(x > 0) & (x < 10)]).sum())} of "
        f"{int(((x > 0) & (x < 10)).sum())} channels). xsignal's PowerLaw is 0 for "
        "x <= origin (no left_cutoff): the two agree where origin = left_cutoff = 0, "
        "the references' case."
    )
    notes["std"] = (
        "HyperSpy's std (lm, weighted or not) is sqrt(diag(cov) * chisq / (n - p)), i.e. "
        "always scaled by the reduced chi-square with n - p; lstsq the same "
        "(_calculate_covariance). red_chisq divides by n - p - 1. A weighted fit uses "
        "weights 1/sqrt(variance) with variance = the data (Neyman's chi-square): "
        "biased low for low counts (the Offset of 20 counts lands ~1 count low)."
    )
    return res, calls, notes, versions


# ------------------------------------------------------------------ driver
def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--part":
        in_path, out_path = sys.argv[3:5]
        inp = dict(np.load(in_path))
        res, calls, notes, versions = part_hyperspy(inp)
        np.savez(
            out_path,
            __calls=np.array(json.dumps(calls)),
            __notes=np.array(json.dumps(notes)),
            __versions=np.array(json.dumps(versions)),
            **res,
        )
        return
    inp = make_inputs()
    allres = dict(inp)
    versions = {"driver_numpy": np.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        in_path = os.path.join(tmp, "inputs.npz")
        out_path = os.path.join(tmp, "hyperspy.npz")
        np.savez(in_path, **inp)
        subprocess.run(
            [
                HS_PYTHON,
                os.path.abspath(__file__),
                "--part",
                "hyperspy",
                in_path,
                out_path,
            ],
            check=True,
        )
        d = np.load(out_path)
        allres.update({k: d[k] for k in d.files if not k.startswith("__")})
        calls = json.loads(str(d["__calls"]))
        notes = json.loads(str(d["__notes"]))
        versions["hyperspy"] = json.loads(str(d["__versions"]))
    np.savez_compressed(
        OUT,
        calls=np.array(json.dumps(calls, indent=1)),
        notes=np.array(json.dumps(notes, indent=1)),
        versions=np.array(json.dumps(versions, indent=1)),
        **allres,
    )
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, {len(allres) + 3} keys)")


if __name__ == "__main__":
    main()
