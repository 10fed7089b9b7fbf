# ruff: noqa: E501  (the key table and the recorded calls are long lines)
"""Reference results of HyperSpy 2.5 / exspy and pyxem 0.21 signal tools (issue 24).

Writes ``signal_tools.npz`` next to this file: small deterministic inputs, the
peers' outputs and the axis parameters, for xsignal's tests of the "Signal
tools" of shared/API.md.  The peers need their own virtualenvs, so the script
runs in three parts (see README.md):

    python make_signal_tools.py            # driver: any Python with numpy (+scipy)
        -> makes the inputs, then runs
           $XS_HS_PYTHON    make_signal_tools.py --part hyperspy IN OUT   (default /work/hs-venv/bin/python)
           $XS_PYXEM_PYTHON make_signal_tools.py --part pyxem IN OUT      (default /work/pyxem-venv/bin/python)
        -> merges everything into signal_tools.npz

Every array is plain numpy (``np.load(path)`` with the default
``allow_pickle=False`` works).  Three keys hold JSON text (0-d unicode arrays,
read with ``json.loads(str(d["calls"]))``):

``calls``     {output key: the exact Python call that produced it}
``notes``     {topic: conventions and surprises found while making the file}
``versions``  {package: version} of each part

Axis conventions: HyperSpy "navigation" axes come first in the array, the
signal axes last; HyperSpy lists signal axes x-first (``axes_manager.signal_axes[0]``
is the LAST array dim).  All coordinates below are ``offset + scale * index``.

Inputs
------
``eels``  (4, 5, 200) float64, nav (y, x), signal energy.  Power law
    ``A * E**-r`` (A, r per pixel: ``eels_true_A``, ``eels_true_r`` (4, 5)) +
    two Gaussians (centres ``eels_true_centres`` (2,) eV, sigmas
    ``eels_true_sigmas`` (2,) eV, heights ``eels_true_heights`` (4, 5, 2)) with
    Poisson noise (``numpy.random.default_rng(24)``).  Energy axis
    ``eels_axis`` = [offset, scale, size] = [300.0, 0.5, 200], units eV,
    ``is_binned = False``.
``shift_stack`` (6, 200) float64, noise free, same energy axis; spectrum i is
    spectrum 0 moved by ``shift_stack_true_shifts_channels`` (6,) channels
    (integer and fractional) towards higher energy, i.e. ``f(E - s*scale)``.
``images`` (3, 32, 32) float64: a periodic smooth image moved (Fourier shift,
    so sub-pixel moves are exact) by ``images_true_shifts_yx`` (3, 2) pixels
    (dy, dx; positive = content moves to larger index).  Axes scale 1, offset 0.
``stem4d`` (4, 5, 32, 32) float32: nav (y, x); per frame a flat disc of radius
    5 px (intensity 100 on pixels whose centre is <= 5 px from the disc centre)
    at ``stem4d_true_centre_px_xy`` (4, 5, 2) (x, y pixel indices, fractional)
    plus 4 Gaussian spots (height 40, sigma 1 px) at +-9 px in x and in y from
    the disc centre, on a background of 1, Poisson noise
    (``default_rng(2024)``).  Signal axes ``stem4d_sig_axis`` = [offset, scale,
    size] = [-1.6, 0.1, 32] for both kx and ky, units 1/nm (pixel 16 is 0);
    navigation axes scale 1 nm offset 0.

HyperSpy 2.5 / exspy outputs (on ``eels`` unless said)
-----------------------------------------------------
``hs_integrate1D``            (4, 5)        ``s.integrate1D(-1)`` (non-binned -> Simpson)
``hs_integrate_simpson``      (4, 5)        ``s.integrate_simpson(-1)``
``hs_derivative1``            (4, 5, 200)   ``s.derivative(-1, order=1)``
``hs_derivative2``            (4, 5, 200)   ``s.derivative(-1, order=2)``
``hs_savgol``                 (4, 5, 200)   ``s.smooth_savitzky_golay(window_length=11, polynomial_order=3)``
``hs_savgol_deriv1``          (4, 5, 200)   same with ``differential_order=1``
``hs_gaussian_filter``        (4, 5, 200)   ``s.gaussian_filter(FWHM=2.0)``
``hs_fft_shift``              (4, 5, 200) complex128  ``s.fft(shift=True)``
``hs_fft_shift_axis``         [offset, scale, size] of its frequency axis (1/eV)
``hs_fft_noshift_axis``       the same for ``s.fft(shift=False)``
``hs_noise_variance``         (4, 5, 200)   ``s.estimate_poissonian_noise_variance()`` then
                                            ``s.metadata.Signal.Noise_properties.variance.data``
``hs_noise_variance_gain``    (4, 5, 200)   with ``gain_factor=2.0, gain_offset=10.0, correlation_factor=0.5``
``hs_bg_powerlaw``            (4, 5, 200)   ``s.remove_background(signal_range=(310.0, 340.0), background_type="PowerLaw", fast=True)``
``hs_bg_powerlaw_A``, ``hs_bg_powerlaw_r``  (4, 5)  the fitted PowerLaw parameters (``return_model=True``)
``hs_bg_polynomial``          (4, 5, 200)   same, ``background_type="Polynomial", polynomial_order=2``
``hs_bg_polynomial_coeffs``   (4, 5, 3)     its a0, a1, a2 (value = a0 + a1*E + a2*E**2)
``hs_bg_offset``              (4, 5, 200)   same, ``background_type="Offset"``
``hs_bg_offset_value``        (4, 5)        its offset
``hs_bg_range_indices``       (4,) int      i1, i2, i3, i4 HyperSpy's PowerLaw estimate used (see notes)
``hs_estimate_shift1D``       (6,)          on ``shift_stack``: ``estimate_shift1D(start=320.0, end=380.0, reference_indices=(0,))`` (eV)
``hs_align1D``                (6, n)        ``align1D(start=320.0, end=380.0, reference_indices=(0,))`` (crop=True)
``hs_align1D_axis``           [offset, scale, size] of the cropped energy axis
``hs_align1D_nocrop``         (6, 200)      same with ``crop=False`` (fill NaN)
``hs_shift1D_nocrop``         (6, 200)      ``shift1D(-true_shifts_eV, crop=False)`` (undo the known shifts)
``hs_ohaver_<y>_<x>_{position,height,width}``  ``find_peaks1D_ohaver()`` at pixels (0, 0) and (2, 3)
``hs_estimate_shift2D_sub1``  (3, 2)        on ``images``: ``estimate_shift2D(reference="current", sub_pixel_factor=1)``
``hs_estimate_shift2D_sub10`` (3, 2)        ``sub_pixel_factor=10``
``hs_estimate_shift2D_nofilter_sub10`` (3, 2)  ``sub_pixel_factor=10, sobel=False, medfilter=False, hanning=False``
``hs_estimate_shift2D_phase_sub10``    (3, 2)  the same with ``normalize_corr=True`` (phase correlation)
``hs_align2D``                (3, ny, nx)   ``align2D()`` (defaults: estimates with sub_pixel_factor=1, crop=True)
``hs_align2D_shifts10_nocrop`` (3, 32, 32)  ``align2D(shifts=hs_estimate_shift2D_sub10, crop=False)`` (fill NaN)

pyxem 0.21 outputs (``pyxem.signals.Diffraction2D`` of ``stem4d``)
----------------------------------------------------------------
``px_com_center_px_xy``       (4, 5, 2) ``pyxem.utils.diffraction.find_center_of_mass(s)`` pixels, [x, y]
``px_beam_shift_px_xy``       (4, 5, 2) ``s.get_direct_beam_position(method="center_of_mass")``
                                        = signal_shape/2 - centre, pixels, [x, y]
``px_com_mask_center_px_xy``  (4, 5, 2) ``find_center_of_mass(s, mask=(16.0, 16.0, 8.0))``
``px_com_mask``               (32, 32) bool, the mask pyxem made for that call (True = used)
``px_com_threshold_center_px_xy`` (4, 5, 2) ``find_center_of_mass(s, threshold=2.0)``
``px_vimg``                   (5, 4, 5) ``s.get_virtual_image([roi_0, ..., roi_4])``, first dim the ROI
``px_vimg_masks``             (5, 32, 32) bool, each ROI's pixels (HyperSpy's membership rule, see notes)
``px_vimg_rois``              JSON text: the ROIs (calibrated units, 1/nm)
``px_azim1d_sum``             (4, 5, 16) ``s.get_azimuthal_integral1d(npt=16)`` (a sum, pyxem's default)
``px_azim1d_mean``            (4, 5, 16) ``s.get_azimuthal_integral1d(npt=16, mean=True)``
``px_azim1d_mean_range``      (4, 5, 16) ``s.get_azimuthal_integral1d(npt=16, radial_range=(0.0, 1.6), mean=True)``
``px_azim1d_axis``, ``px_azim1d_range_axis``  [offset, scale, size] of their "Radius" axes (1/nm)
``px_azim1d_ones_sum``, ``px_azim1d_ones_sum_range``  (16,) the two sum calls on a frame of ones
                              (pixel area per bin; the divisor pyxem's mean=True uses)
``px_azim1d_center_px``       (2,) ``s.calibration.center`` (pixels, x then y)
``px_find_peaks_00``          (n, 2) ``s.inav[0, 0].find_peaks(method="local_max", interactive=False, min_distance=3, threshold_rel=0.1)``
``px_find_peaks_32``          (n, 2) the same on ``s.inav[3, 2]`` (x index 3, y index 2)
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "signal_tools.npz")
HS_PYTHON = os.environ.get("XS_HS_PYTHON", "/work/hs-venv/bin/python")
PYXEM_PYTHON = os.environ.get("XS_PYXEM_PYTHON", "/work/pyxem-venv/bin/python")

E_OFFSET, E_SCALE, E_SIZE = 300.0, 0.5, 200
K_OFFSET, K_SCALE, K_SIZE = -1.6, 0.1, 32


# ----------------------------------------------------------------- inputs
def make_inputs():
    out = {}
    E = E_OFFSET + E_SCALE * np.arange(E_SIZE)
    rng = np.random.default_rng(24)
    ny, nx = 4, 5
    r = rng.uniform(2.6, 3.4, (ny, nx))
    # about 2e4 counts at 300 eV
    A = 2.0e4 * 300.0**r * rng.uniform(0.8, 1.2, (ny, nx))
    centres = np.array([352.0, 377.5])
    sigmas = np.array([3.0, 2.0])
    heights = np.stack(
        [rng.uniform(1500, 2500, (ny, nx)), rng.uniform(600, 1200, (ny, nx))], -1
    )
    clean = A[..., None] * E ** -r[..., None]
    for k in range(2):
        clean = clean + heights[..., k, None] * np.exp(
            -0.5 * ((E - centres[k]) / sigmas[k]) ** 2
        )
    out["eels"] = rng.poisson(clean).astype(np.float64)
    out["eels_axis"] = np.array([E_OFFSET, E_SCALE, E_SIZE], dtype=np.float64)
    out["eels_true_A"] = A
    out["eels_true_r"] = r
    out["eels_true_centres"] = centres
    out["eels_true_sigmas"] = sigmas
    out["eels_true_heights"] = heights

    # shift stack for estimate_shift1D / align1D
    shifts_ch = np.array([0.0, 3.0, -5.0, 1.5, -2.25, 4.6])
    stack = []
    for s in shifts_ch:
        x = E - s * E_SCALE
        f = (
            100.0
            + 0.2 * (x - 300.0)
            + 800.0 * np.exp(-0.5 * ((x - 345.0) / 2.5) ** 2)
            + 500.0 * np.exp(-0.5 * ((x - 362.0) / 4.0) ** 2)
        )
        stack.append(f)
    out["shift_stack"] = np.array(stack)
    out["shift_stack_true_shifts_channels"] = shifts_ch

    # image stack for estimate_shift2D / align2D (periodic, Fourier-shifted)
    rng = np.random.default_rng(7)
    n = 32
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.fftfreq(n)[None, :]
    spec = np.fft.fft2(rng.normal(size=(n, n))) * np.exp(
        -(kx**2 + ky**2) / (2 * 0.08**2)
    )
    base = np.real(np.fft.ifft2(spec))
    base = (base - base.min()) / (base.max() - base.min()) * 100.0 + 10.0
    base_f = np.fft.fft2(base)
    true = np.array([[0.0, 0.0], [3.0, -2.0], [-1.5, 2.3]])
    imgs = [
        np.real(np.fft.ifft2(base_f * np.exp(-2j * np.pi * (ky * dy + kx * dx))))
        for dy, dx in true
    ]
    out["images"] = np.array(imgs)
    out["images_true_shifts_yx"] = true

    # 4D-STEM
    rng = np.random.default_rng(2024)
    ny, nx = 4, 5
    cx = 16.0 + rng.uniform(-2.0, 2.0, (ny, nx))
    cy = 16.0 + rng.uniform(-2.0, 2.0, (ny, nx))
    yy, xx = np.mgrid[0:K_SIZE, 0:K_SIZE].astype(np.float64)
    frames = np.empty((ny, nx, K_SIZE, K_SIZE))
    for j in range(ny):
        for i in range(nx):
            f = np.ones((K_SIZE, K_SIZE))
            f += 100.0 * (((xx - cx[j, i]) ** 2 + (yy - cy[j, i]) ** 2) <= 25.0)
            for ddx, ddy in ((9, 0), (-9, 0), (0, 9), (0, -9)):
                f += 40.0 * np.exp(
                    -((xx - cx[j, i] - ddx) ** 2 + (yy - cy[j, i] - ddy) ** 2) / 2.0
                )
            frames[j, i] = f
    out["stem4d"] = rng.poisson(frames).astype(np.float32)
    out["stem4d_true_centre_px_xy"] = np.stack([cx, cy], -1)
    out["stem4d_sig_axis"] = np.array([K_OFFSET, K_SCALE, K_SIZE], dtype=np.float64)
    return out


def axis3(ax):
    return np.array([ax.offset, ax.scale, ax.size], dtype=np.float64)


# ---------------------------------------------------------------- HyperSpy
def part_hyperspy(inp):
    import exspy
    import hyperspy
    import hyperspy.api as hs
    import scipy

    res, calls, notes = {}, {}, {}
    versions = {
        "hyperspy": hyperspy.__version__,
        "exspy": exspy.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    import skimage

    versions["scikit-image"] = skimage.__version__

    def eels_signal(data=None):
        d = inp["eels"] if data is None else data
        axes = [
            dict(
                name="y",
                size=d.shape[0],
                scale=1.0,
                offset=0.0,
                units="nm",
                navigate=True,
            ),
            dict(
                name="x",
                size=d.shape[1],
                scale=1.0,
                offset=0.0,
                units="nm",
                navigate=True,
            ),
            dict(
                name="Energy loss",
                size=d.shape[-1],
                scale=E_SCALE,
                offset=E_OFFSET,
                units="eV",
                navigate=False,
            ),
        ]
        s = hs.signals.Signal1D(d.copy(), axes=axes)
        s.axes_manager.signal_axes[0].is_binned = False
        return s

    setup = (
        "s = hs.signals.Signal1D(eels, axes=[y, x, energy(offset=300.0, scale=0.5, units='eV')]); "
        "s.axes_manager.signal_axes[0].is_binned = False"
    )
    calls["_setup_eels"] = setup

    s = eels_signal()
    res["hs_integrate1D"] = s.integrate1D(-1).data
    calls["hs_integrate1D"] = "s.integrate1D(-1).data"
    res["hs_integrate_simpson"] = s.integrate_simpson(-1).data
    calls["hs_integrate_simpson"] = "s.integrate_simpson(-1).data"
    res["hs_derivative1"] = s.derivative(-1, order=1).data
    calls["hs_derivative1"] = "s.derivative(-1, order=1).data"
    res["hs_derivative2"] = s.derivative(-1, order=2).data
    calls["hs_derivative2"] = "s.derivative(-1, order=2).data"

    s2 = eels_signal()
    s2.smooth_savitzky_golay(window_length=11, polynomial_order=3)
    res["hs_savgol"] = s2.data
    calls["hs_savgol"] = (
        "s.smooth_savitzky_golay(window_length=11, polynomial_order=3)  # in place"
    )
    s2 = eels_signal()
    s2.smooth_savitzky_golay(window_length=11, polynomial_order=3, differential_order=1)
    res["hs_savgol_deriv1"] = s2.data
    calls["hs_savgol_deriv1"] = (
        "s.smooth_savitzky_golay(window_length=11, polynomial_order=3, differential_order=1)  # in place"
    )

    s2 = eels_signal()
    s2.gaussian_filter(FWHM=2.0)
    res["hs_gaussian_filter"] = s2.data
    calls["hs_gaussian_filter"] = "s.gaussian_filter(FWHM=2.0)  # in place"

    f = s.fft(shift=True)
    res["hs_fft_shift"] = f.data
    res["hs_fft_shift_axis"] = axis3(f.axes_manager.signal_axes[0])
    notes["fft_units"] = str(f.axes_manager.signal_axes[0].units)
    calls["hs_fft_shift"] = "s.fft(shift=True).data"
    calls["hs_fft_shift_axis"] = (
        "[ax.offset, ax.scale, ax.size] for ax = s.fft(shift=True).axes_manager.signal_axes[0]"
    )
    f0 = s.fft(shift=False)
    res["hs_fft_noshift_axis"] = axis3(f0.axes_manager.signal_axes[0])
    calls["hs_fft_noshift_axis"] = "the same for s.fft(shift=False)"
    assert np.array_equal(f0.data, np.fft.fft(inp["eels"], axis=-1))
    assert np.array_equal(
        f.data, np.fft.fftshift(np.fft.fft(inp["eels"], axis=-1), axes=-1)
    )

    s2 = eels_signal()
    s2.estimate_poissonian_noise_variance()
    res["hs_noise_variance"] = np.asarray(
        s2.metadata.Signal.Noise_properties.variance.data
    )
    calls["hs_noise_variance"] = (
        "s.estimate_poissonian_noise_variance(); s.metadata.Signal.Noise_properties.variance.data"
    )
    s2 = eels_signal()
    s2.estimate_poissonian_noise_variance(
        gain_factor=2.0, gain_offset=10.0, correlation_factor=0.5
    )
    res["hs_noise_variance_gain"] = np.asarray(
        s2.metadata.Signal.Noise_properties.variance.data
    )
    calls["hs_noise_variance_gain"] = (
        "s.estimate_poissonian_noise_variance(gain_factor=2.0, gain_offset=10.0, correlation_factor=0.5); "
        "s.metadata.Signal.Noise_properties.variance.data"
    )

    # background removal
    rb = dict(signal_range=(310.0, 340.0), fast=True, show_progressbar=False)
    eels_diff = {}
    for key, kw, comp_keys in (
        ("hs_bg_powerlaw", dict(background_type="PowerLaw"), ("A", "r")),
        (
            "hs_bg_polynomial",
            dict(background_type="Polynomial", polynomial_order=2),
            ("a0", "a1", "a2"),
        ),
        ("hs_bg_offset", dict(background_type="Offset"), ("offset",)),
    ):
        s2 = eels_signal()
        out = s2.remove_background(**rb, **kw)
        res[key] = out.data
        kwtxt = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        calls[key] = (
            f"s.remove_background(signal_range=(310.0, 340.0), {kwtxt}, fast=True, show_progressbar=False).data"
        )
        s2 = eels_signal()
        out2, model = s2.remove_background(**rb, **kw, return_model=True)
        assert np.array_equal(out2.data, out.data)
        comp = model[0]
        vals = [np.array(getattr(comp, p).map["values"]) for p in comp_keys]
        if key == "hs_bg_powerlaw":
            res["hs_bg_powerlaw_A"], res["hs_bg_powerlaw_r"] = vals
            calls["hs_bg_powerlaw_A"] = calls["hs_bg_powerlaw_r"] = (
                "out, m = s.remove_background(..., return_model=True); m[0].A.map['values'], m[0].r.map['values']"
            )
        elif key == "hs_bg_polynomial":
            res["hs_bg_polynomial_coeffs"] = np.stack(vals, -1)
            calls["hs_bg_polynomial_coeffs"] = (
                "m[0].a0/a1/a2.map['values'] stacked on the last dim"
            )
        else:
            res["hs_bg_offset_value"] = vals[0]
            calls["hs_bg_offset_value"] = "m[0].offset.map['values']"
        # exspy's EELSSpectrum (it does not override remove_background, but see notes)
        s3 = eels_signal()
        s3.set_signal_type("EELS")
        s3.axes_manager.signal_axes[0].is_binned = False
        assert type(s3).__name__ == "EELSSpectrum", type(s3)
        out3 = s3.remove_background(**rb, **kw)
        eels_diff[key] = float(np.max(np.abs(out3.data - out.data)))
    ax = eels_signal().axes_manager.signal_axes[0]
    i1, i4 = ax.value_range_to_indices(310.0, 340.0)
    if (i4 + i1) % 2:
        i4 -= 1
    i3 = (i4 + i1) // 2
    res["hs_bg_range_indices"] = np.array([i1, i3, i3, i4])
    calls["hs_bg_range_indices"] = (
        "PowerLaw.estimate_parameters' i1, i2, i3, i4 for (310.0, 340.0)"
    )
    ch = eels_signal()
    ch.set_signal_type("EELS")
    ch.axes_manager.signal_axes[0].is_binned = False
    notes["exspy_eels_binned"] = (
        "exspy's EELSSpectrum.__init__ sets is_binned = True, so on s.set_signal_type('EELS') and on EVERY "
        "signal derived from an EELSSpectrum (isig slices, deepcopy) the energy axis is binned again even "
        "after setting it False (slice is_binned: "
        f"{ch.isig[20:40].axes_manager.signal_axes[0].is_binned}). remove_background's estimate works on "
        "isig slices, so on an EELSSpectrum whose axis was set non-binned it integrates with the binned rule "
        "(sums) and the model is evaluated non-binned: inconsistent results (max |difference| to the Signal1D "
        f"references: {json.dumps({k: round(v, 3) for k, v in eels_diff.items()})}). The references here use "
        "a plain hs.signals.Signal1D with is_binned = False throughout, which is HyperSpy's own "
        "(consistent) non-binned rule. exspy does not override any tool used here."
    )

    # 1D shifts
    def shift_signal():
        d = inp["shift_stack"]
        axes = [
            dict(name="index", size=d.shape[0], scale=1.0, offset=0.0, navigate=True),
            dict(
                name="Energy loss",
                size=d.shape[1],
                scale=E_SCALE,
                offset=E_OFFSET,
                units="eV",
                navigate=False,
            ),
        ]
        t = hs.signals.Signal1D(d.copy(), axes=axes)
        t.axes_manager.signal_axes[0].is_binned = False
        return t

    calls["_setup_shift_stack"] = (
        "t = hs.signals.Signal1D(shift_stack, axes=[index, energy(offset=300.0, scale=0.5)])"
    )
    sh_kw = dict(start=320.0, end=380.0, reference_indices=(0,), show_progressbar=False)
    t = shift_signal()
    res["hs_estimate_shift1D"] = np.asarray(t.estimate_shift1D(**sh_kw))
    calls["hs_estimate_shift1D"] = (
        "t.estimate_shift1D(start=320.0, end=380.0, reference_indices=(0,), show_progressbar=False)  "
        "# defaults max_shift=None, interpolate=True, number_of_interpolation_points=5"
    )
    t = shift_signal()
    t.align1D(**sh_kw)
    res["hs_align1D"] = t.data
    res["hs_align1D_axis"] = axis3(t.axes_manager.signal_axes[0])
    calls["hs_align1D"] = (
        "t.align1D(start=320.0, end=380.0, reference_indices=(0,), show_progressbar=False)  "
        "# in place; defaults crop=True, expand=False, fill_value=nan, interpolation_method='linear'"
    )
    calls["hs_align1D_axis"] = (
        "[offset, scale, size] of t.axes_manager.signal_axes[0] after align1D"
    )
    t = shift_signal()
    t.align1D(**sh_kw, crop=False)
    res["hs_align1D_nocrop"] = t.data
    calls["hs_align1D_nocrop"] = (
        "t.align1D(start=320.0, end=380.0, reference_indices=(0,), crop=False, show_progressbar=False)"
    )
    t = shift_signal()
    t.shift1D(
        -inp["shift_stack_true_shifts_channels"] * E_SCALE,
        crop=False,
        show_progressbar=False,
    )
    res["hs_shift1D_nocrop"] = t.data
    calls["hs_shift1D_nocrop"] = (
        "t.shift1D(-shift_stack_true_shifts_channels * 0.5, crop=False, show_progressbar=False)  "
        "# in place; interpolation_method='linear', fill_value=nan"
    )

    # O'Haver peaks
    s2 = eels_signal()
    peaks = s2.find_peaks1D_ohaver()
    calls["hs_ohaver"] = (
        "peaks = s.find_peaks1D_ohaver(); peaks[y, x]['position'|'height'|'width']"
    )
    pk = np.asarray(peaks.data if hasattr(peaks, "data") else peaks)
    notes["ohaver_return"] = (
        f"find_peaks1D_ohaver() returns {type(peaks).__name__} (object array shape {pk.shape}); "
        f"each item a structured array with fields {pk[0, 0].dtype.names}"
    )
    for y, x in ((0, 0), (2, 3)):
        for fld in pk[y, x].dtype.names:
            res[f"hs_ohaver_{y}_{x}_{fld}"] = np.asarray(
                pk[y, x][fld], dtype=np.float64
            )

    # 2D shifts
    def image_signal():
        return hs.signals.Signal2D(inp["images"].copy())

    calls["_setup_images"] = (
        "im = hs.signals.Signal2D(images)  # axes scale 1, offset 0"
    )
    im = image_signal()
    res["hs_estimate_shift2D_sub1"] = np.asarray(
        im.estimate_shift2D(
            reference="current", sub_pixel_factor=1, show_progressbar=False
        )
    )
    calls["hs_estimate_shift2D_sub1"] = (
        "im.estimate_shift2D(reference='current', sub_pixel_factor=1, show_progressbar=False)  "
        "# defaults sobel=True, medfilter=True, hanning=True, normalize_corr=False; current index 0"
    )
    im = image_signal()
    res["hs_estimate_shift2D_sub10"] = np.asarray(
        im.estimate_shift2D(
            reference="current", sub_pixel_factor=10, show_progressbar=False
        )
    )
    calls["hs_estimate_shift2D_sub10"] = (
        "im.estimate_shift2D(reference='current', sub_pixel_factor=10, show_progressbar=False)"
    )
    for key, kw in (
        (
            "hs_estimate_shift2D_nofilter_sub10",
            dict(sobel=False, medfilter=False, hanning=False),
        ),
        (
            "hs_estimate_shift2D_phase_sub10",
            dict(sobel=False, medfilter=False, hanning=False, normalize_corr=True),
        ),
    ):
        im = image_signal()
        res[key] = np.asarray(
            im.estimate_shift2D(
                reference="current", sub_pixel_factor=10, show_progressbar=False, **kw
            )
        )
        kwtxt = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        calls[key] = (
            f"im.estimate_shift2D(reference='current', sub_pixel_factor=10, {kwtxt}, show_progressbar=False)"
        )
    im = image_signal()
    ret = im.align2D(show_progressbar=False)
    res["hs_align2D"] = im.data
    res["hs_align2D_returned_shifts"] = (
        np.asarray(ret) if ret is not None else np.zeros((0, 2))
    )
    res["hs_align2D_axes"] = np.array([axis3(a) for a in im.axes_manager.signal_axes])
    calls["hs_align2D"] = (
        "im.align2D(show_progressbar=False)  # in place; defaults crop=True, interpolation_order=1"
    )
    calls["hs_align2D_returned_shifts"] = "the value align2D() returned"
    calls["hs_align2D_axes"] = (
        "[offset, scale, size] of im.axes_manager.signal_axes (x then y) after align2D()"
    )
    im = image_signal()
    im.align2D(
        shifts=res["hs_estimate_shift2D_sub10"], crop=False, show_progressbar=False
    )
    res["hs_align2D_shifts10_nocrop"] = im.data
    calls["hs_align2D_shifts10_nocrop"] = (
        "im.align2D(shifts=hs_estimate_shift2D_sub10, crop=False, show_progressbar=False)  # fill_value=nan"
    )
    return res, calls, notes, versions


# ------------------------------------------------------------------- pyxem
def part_pyxem(inp):
    import hyperspy
    import hyperspy.api as hs
    import pyxem
    import pyxem.signals
    from pyxem.utils import _pixelated_stem_tools as pst
    from pyxem.utils.diffraction import find_center_of_mass

    res, calls, notes = {}, {}, {}
    versions = {
        "pyxem": pyxem.__version__,
        "hyperspy": hyperspy.__version__,
        "numpy": np.__version__,
    }
    import numba
    import shapely
    import skimage

    versions.update(
        numba=numba.__version__,
        shapely=shapely.__version__,
        **{"scikit-image": skimage.__version__},
    )
    try:
        import pyFAI

        versions["pyFAI"] = pyFAI.version
    except ImportError:
        versions["pyFAI"] = "not installed"

    def stem_signal():
        s = pyxem.signals.Diffraction2D(inp["stem4d"].copy())
        am = s.axes_manager
        for ax, name in zip(am.navigation_axes, ("x", "y")):
            ax.name, ax.scale, ax.offset, ax.units = name, 1.0, 0.0, "nm"
        for ax, name in zip(am.signal_axes, ("kx", "ky")):
            ax.name, ax.scale, ax.offset, ax.units = name, K_SCALE, K_OFFSET, "1/nm"
        return s

    calls["_setup_stem4d"] = (
        "s = pyxem.signals.Diffraction2D(stem4d); nav axes x, y scale 1 nm; "
        "signal axes kx, ky: scale 0.1, offset -1.6, units '1/nm'"
    )
    s = stem_signal()
    notes["pyxem_center_of_mass"] = (
        "pyxem 0.21 Diffraction2D has no center_of_mass() method (hasattr: "
        f"{hasattr(s, 'center_of_mass')}); the centre of mass is "
        "pyxem.utils.diffraction.find_center_of_mass(s) (pixel indices, [x, y] = scipy.ndimage.center_of_mass "
        "reversed, uncalibrated) or s.get_direct_beam_position(method='center_of_mass') which returns "
        "BeamShift = signal_shape/2 - centre (pixels, [x, y], i.e. the shift that would centre the beam; "
        "units set to 'px'). Calibrated centre = offset + scale * centre_px (here -1.6 + 0.1 * px)."
    )
    c = find_center_of_mass(s, show_progressbar=False)
    res["px_com_center_px_xy"] = np.asarray(c.data, dtype=np.float64)
    calls["px_com_center_px_xy"] = (
        "pyxem.utils.diffraction.find_center_of_mass(s, show_progressbar=False).data"
    )
    b = s.get_direct_beam_position(method="center_of_mass")
    res["px_beam_shift_px_xy"] = np.asarray(b.data, dtype=np.float64)
    calls["px_beam_shift_px_xy"] = (
        "s.get_direct_beam_position(method='center_of_mass').data"
    )
    notes["pyxem_beam_shift_units"] = (
        f"BeamShift units {getattr(b, 'units', None)!r}, dtype {b.data.dtype}"
    )
    c = find_center_of_mass(s, mask=(16.0, 16.0, 8.0), show_progressbar=False)
    res["px_com_mask_center_px_xy"] = np.asarray(c.data, dtype=np.float64)
    calls["px_com_mask_center_px_xy"] = (
        "find_center_of_mass(s, mask=(16.0, 16.0, 8.0), show_progressbar=False).data  # mask = (x, y, r) in pixels"
    )
    res["px_com_mask"] = np.asarray(
        pst._make_circular_mask(16.0, 16.0, 32, 32, 8.0), dtype=bool
    )
    calls["px_com_mask"] = (
        "pyxem.utils._pixelated_stem_tools._make_circular_mask(16.0, 16.0, 32, 32, 8.0)"
    )
    c = find_center_of_mass(s, threshold=2.0, show_progressbar=False)
    res["px_com_threshold_center_px_xy"] = np.asarray(c.data, dtype=np.float64)
    calls["px_com_threshold_center_px_xy"] = (
        "find_center_of_mass(s, threshold=2.0, show_progressbar=False).data  # pixels < 2.0 * frame mean set to 0"
    )

    # virtual images
    rois = [
        ("CircleROI", dict(cx=0.0, cy=0.0, r=0.6)),
        ("CircleROI", dict(cx=0.0, cy=0.0, r=1.4, r_inner=0.7)),
        ("RectangularROI", dict(left=-1.2, top=-0.4, right=0.3, bottom=1.0)),
        ("CircleROI", dict(cx=0.35, cy=-0.25, r=0.45)),
        ("RectangularROI", dict(left=-1.23, top=-0.36, right=0.27, bottom=1.04)),
    ]
    roi_objs = [getattr(hs.roi, k)(**kw) for k, kw in rois]
    v = s.get_virtual_image(roi_objs)
    res["px_vimg"] = np.asarray(v.data)
    res["px_vimg_rois"] = np.array(json.dumps([[k, kw] for k, kw in rois]))
    calls["px_vimg"] = (
        "s.get_virtual_image([hs.roi.CircleROI(cx=0.0, cy=0.0, r=0.6), "
        "hs.roi.CircleROI(cx=0.0, cy=0.0, r=1.4, r_inner=0.7), "
        "hs.roi.RectangularROI(left=-1.2, top=-0.4, right=0.3, bottom=1.0), "
        "hs.roi.CircleROI(cx=0.35, cy=-0.25, r=0.45), "
        "hs.roi.RectangularROI(left=-1.23, top=-0.36, right=0.27, bottom=1.04)]).data"
    )
    notes["pyxem_vimg_dtype"] = (
        f"get_virtual_image output dtype {v.data.dtype} for float32 input, shape {v.data.shape}"
    )
    masks = []
    idx = hs.signals.Signal2D(
        np.arange(K_SIZE * K_SIZE, dtype=np.float64).reshape(K_SIZE, K_SIZE)
    )
    for ax in idx.axes_manager.signal_axes:
        ax.scale, ax.offset = K_SCALE, K_OFFSET
    for ro in roi_objs:
        cut = ro(idx, axes=idx.axes_manager.signal_axes).data
        m = np.zeros(K_SIZE * K_SIZE, dtype=bool)
        m[cut[np.isfinite(cut)].astype(int)] = True
        masks.append(m.reshape(K_SIZE, K_SIZE))
    res["px_vimg_masks"] = np.array(masks)
    calls["px_vimg_masks"] = (
        "pixels kept by roi(sig, axes=sig.axes_manager.signal_axes) on a 32x32 Signal2D of pixel numbers "
        "with the same signal axes (non-NaN = inside)"
    )
    chk = np.einsum(
        "yxij,rij->ryx",
        inp["stem4d"].astype(np.float64),
        res["px_vimg_masks"].astype(np.float64),
    )
    notes["pyxem_vimg_check"] = (
        "px_vimg equals sum(frame * px_vimg_masks[roi]) to max rel diff "
        f"{np.max(np.abs(chk - res['px_vimg']) / np.abs(chk)):.2e}"
    )

    # azimuthal integration
    res["px_azim1d_center_px"] = np.asarray(s.calibration.center, dtype=np.float64)
    calls["px_azim1d_center_px"] = (
        "s.calibration.center  # pixels, [x, y] (-offset/scale per signal axis)"
    )
    a = s.get_azimuthal_integral1d(npt=16)
    res["px_azim1d_sum"] = np.asarray(a.data)
    res["px_azim1d_axis"] = axis3(a.axes_manager.signal_axes[0])
    calls["px_azim1d_sum"] = "s.get_azimuthal_integral1d(npt=16).data"
    calls["px_azim1d_axis"] = "[offset, scale, size] of its signal axis ('Radius')"
    notes["pyxem_azim_units"] = (
        f"Radius axis units {a.axes_manager.signal_axes[0].units!r}"
    )
    a = s.get_azimuthal_integral1d(npt=16, mean=True)
    res["px_azim1d_mean"] = np.asarray(a.data)
    calls["px_azim1d_mean"] = "s.get_azimuthal_integral1d(npt=16, mean=True).data"
    a = s.get_azimuthal_integral1d(npt=16, radial_range=(0.0, 1.6), mean=True)
    res["px_azim1d_mean_range"] = np.asarray(a.data)
    res["px_azim1d_range_axis"] = axis3(a.axes_manager.signal_axes[0])
    calls["px_azim1d_mean_range"] = (
        "s.get_azimuthal_integral1d(npt=16, radial_range=(0.0, 1.6), mean=True).data"
    )
    calls["px_azim1d_range_axis"] = "[offset, scale, size] of its 'Radius' axis"

    ones = pyxem.signals.Diffraction2D(np.ones((K_SIZE, K_SIZE), dtype=np.float32))
    for ax in ones.axes_manager.signal_axes:
        ax.scale, ax.offset, ax.units = K_SCALE, K_OFFSET, "1/nm"
    res["px_azim1d_ones_sum"] = np.asarray(ones.get_azimuthal_integral1d(npt=16).data)
    res["px_azim1d_ones_sum_range"] = np.asarray(
        ones.get_azimuthal_integral1d(npt=16, radial_range=(0.0, 1.6)).data
    )
    calls["px_azim1d_ones_sum"] = (
        "the same calls (npt=16; and radial_range=(0.0, 1.6)) on a 32x32 Diffraction2D of ones with the "
        "same signal axes: the pixel area pyxem gives each radial bin (the divisor of mean=True)"
    )
    calls["px_azim1d_ones_sum_range"] = calls["px_azim1d_ones_sum"]

    # 2D peaks on one frame
    for ix, iy in ((0, 0), (3, 2)):
        fr = s.inav[ix, iy]
        p = fr.find_peaks(
            method="local_max",
            interactive=False,
            show_progressbar=False,
            min_distance=3,
            threshold_rel=0.1,
        )
        pdata = p.data if hasattr(p, "data") else p
        if isinstance(pdata, np.ndarray) and pdata.dtype == object:
            pdata = pdata.item() if pdata.ndim == 0 else pdata.ravel()[0]
        res[f"px_find_peaks_{ix}{iy}"] = np.asarray(pdata, dtype=np.float64)
        calls[f"px_find_peaks_{ix}{iy}"] = (
            f"s.inav[{ix}, {iy}].find_peaks(method='local_max', interactive=False, show_progressbar=False, "
            "min_distance=3, threshold_rel=0.1)  # -> skimage.feature.peak_local_max"
        )
        notes["pyxem_find_peaks_return"] = (
            f"find_peaks on one frame returns {type(p).__name__}; Diffraction2D.find_peaks is HyperSpy's "
            f"Signal2D.find_peaks: {type(s).find_peaks is hs.signals.Signal2D.find_peaks}"
        )
    return res, calls, notes, versions


# ------------------------------------------------------------------ driver
def run_part(name, python, in_path, tmpdir):
    out = os.path.join(tmpdir, f"{name}.npz")
    subprocess.run(
        [python, os.path.abspath(__file__), "--part", name, in_path, out], check=True
    )
    d = np.load(out)
    res = {k: d[k] for k in d.files if not k.startswith("__")}
    meta = {k: json.loads(str(d[k])) for k in ("__calls", "__notes", "__versions")}
    return res, meta


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--part":
        name, in_path, out_path = sys.argv[2:5]
        inp = dict(np.load(in_path))
        res, calls, notes, versions = {"hyperspy": part_hyperspy, "pyxem": part_pyxem}[
            name
        ](inp)
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
    calls, notes, versions = {}, {}, {"driver_numpy": np.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        in_path = os.path.join(tmp, "inputs.npz")
        np.savez(in_path, **inp)
        for name, python in (("hyperspy", HS_PYTHON), ("pyxem", PYXEM_PYTHON)):
            if not os.path.exists(python):
                notes[f"skipped_{name}"] = f"{python} not found"
                continue
            res, meta = run_part(name, python, in_path, tmp)
            allres.update(res)
            calls.update(meta["__calls"])
            notes.update(meta["__notes"])
            versions[name] = meta["__versions"]
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
