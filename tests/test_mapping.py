"""map, map_blocks, map_overlap: values against numpy, laziness, errors, schedulers."""

from __future__ import annotations

import threading

import dask
import numpy as np
import pytest
import xarray as xr
from clusters import local_client
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import xsignal
from xsignal.testing import raise_if_dask_computes, spectrum_image, write_spectrum_image


def centre_of_mass(s: np.ndarray) -> float:
    return float((s * np.arange(s.shape[-1])).sum() / s.sum())


def pattern_com(p: np.ndarray) -> np.ndarray:
    """Centre of mass (row, column) of a 2D pattern."""
    total = p.sum()
    rows = (p.sum(axis=1) * np.arange(p.shape[0])).sum() / total
    cols = (p.sum(axis=0) * np.arange(p.shape[1])).sum() / total
    return np.array([rows, cols])


def expected(si: xr.DataArray, fn) -> np.ndarray:
    """Reference: a plain numpy loop over the pixels of an (y, x, energy) array."""
    values = np.asarray(si.values)
    return np.array(
        [[fn(values[i, j]) for j in range(si.x.size)] for i in range(si.y.size)]
    )


# --- output shapes and dtypes ------------------------------------------------


def test_scalar_output_is_navigation_only(si, scheduler):
    out = xsignal.map(si, centre_of_mass)
    assert out.dims == ("y", "x")
    assert out.signal.is_lazy == si.signal.is_lazy
    assert out.signal.signal_dims == ()
    np.testing.assert_allclose(out.values, expected(si, centre_of_mass), rtol=1e-6)
    xr.testing.assert_identical(out.y, si.y)
    assert out.attrs["title"] == si.attrs["title"]
    assert out.name == si.name


@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 3, 4)])
def test_array_output_gets_new_signal_dims(si, scheduler, shape):
    def fn(s):
        return np.full(shape, s.sum()) + np.arange(np.prod(shape)).reshape(shape)

    out = si.signal.map(fn)
    names = tuple(f"sig_{i}" for i in range(len(shape)))
    assert out.dims == ("y", "x", *names)
    assert out.signal.signal_dims == names
    assert out.signal.signal_shape == shape
    assert set(out.coords) == {"y", "x"}  # new signal dims get no coords
    sums = si.values.sum(-1).reshape(6, 5, *(1,) * len(shape))
    ref = sums + np.arange(np.prod(shape)).reshape(shape)
    np.testing.assert_allclose(out.values, ref, rtol=1e-5)


def test_output_signal_sizes_names_the_dims(si):
    out = si.signal.map(lambda s: s[:4], output_signal_sizes={"channel": 4})
    assert out.signal.signal_dims == ("channel",)
    np.testing.assert_array_equal(out.values, si.values[..., :4])


def test_output_signal_sizes_checked(si):
    with pytest.raises(ValueError, match="output_signal_sizes"):
        si.signal.map(lambda s: s[:4], output_signal_sizes={"channel": 5})
    with pytest.raises(ValueError, match="navigation dim"):
        si.signal.map(lambda s: s[:4], output_signal_sizes={"x": 4})


def test_same_signal_shape_keeps_signal_dims_and_coords(si):
    out = si.signal.map(lambda s: s[::-1])
    assert out.dims == si.dims
    assert out.signal.signal_dims == ("energy",)
    xr.testing.assert_identical(out.energy, si.energy)
    np.testing.assert_array_equal(out.values, si.values[..., ::-1])


def test_dtype_inferred_and_given(si):
    assert si.signal.map(lambda s: int(s.argmax())).dtype == np.int64
    assert si.signal.map(lambda s: s[:2]).dtype == np.float32
    out = si.signal.map(lambda s: s.argmax(), output_dtype="uint16")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out.values, si.values.argmax(-1))


def test_ragged_output_is_object_array(si, scheduler):
    out = si.signal.map(lambda s: s[s > s.mean()], ragged=True)
    assert out.dims == ("y", "x") and out.dtype == object
    values = out.values
    ref = si.values
    for i in range(ref.shape[0]):
        for j in range(ref.shape[1]):
            s = ref[i, j]
            np.testing.assert_array_equal(values[i, j], s[s > s.mean()])


def test_shape_change_without_ragged_names_the_pixel(si, scheduler):
    ref = si.values
    first_big = ref[0, 0, 5] > ref[0, 0, 6]
    changes = np.argwhere((ref[..., 5] > ref[..., 6]) != first_big)
    i, j = changes[np.lexsort(changes.T[::-1])][0] if si.chunks is None else changes[0]

    def fn(s):
        return s[: 1 + int(s[5] > s[6])]

    with pytest.raises(ValueError, match=r"pixel \(y=\d, x=\d\).*ragged=True"):
        xsignal.map(si, fn).compute()
    if si.chunks is None:  # one block: the first differing pixel in order
        with pytest.raises(ValueError, match=rf"pixel \(y={i}, x={j}\)"):
            xsignal.map(si, fn)


# --- iterated and constant kwargs ---------------------------------------------


def test_iterated_kwarg_other_dim_order_and_chunks(si, scheduler):
    k = xr.DataArray(np.arange(30.0).reshape(5, 6), dims=("x", "y"))
    if si.chunks is not None:
        k = k.chunk({"x": 2, "y": 4})  # unlike the input's (2, 3)
    out = si.signal.map(lambda s, k: s[0] * k, k=k)
    np.testing.assert_allclose(out.values, si.values[..., 0] * k.values.T, rtol=1e-6)


def test_iterated_kwarg_with_its_own_dims(si, scheduler):
    # a shift vector per pixel, the kwarg's extra dim chunked and first
    shift = xr.DataArray(
        np.random.default_rng(0).integers(0, 5, size=(2, 6, 5)),
        dims=("component", "y", "x"),
    ).chunk({"component": 1, "y": 3})
    out = si.signal.map(lambda s, shift: s[shift[0]] + s[shift[1]], shift=shift)
    values, sv = si.values, shift.values
    yy, xx = np.indices((6, 5))
    ref = values[yy, xx, sv[0]] + values[yy, xx, sv[1]]
    np.testing.assert_allclose(out.values, ref)


def test_in_memory_kwarg_with_lazy_input_and_the_reverse(si):
    k = xr.DataArray(np.arange(30.0).reshape(6, 5), dims=("y", "x"))
    k = k if si.chunks is not None else k.chunk({"y": 5})
    out = si.signal.map(lambda s, k: k, k=k)
    assert out.signal.is_lazy == si.signal.is_lazy
    np.testing.assert_array_equal(out.values, k.values)


def test_several_iterated_and_constant_kwargs(si):
    a = xr.DataArray(np.ones((6, 5)), dims=("y", "x"))
    b = xr.DataArray(np.full((5, 6), 2.0), dims=("x", "y"))
    weights = np.linspace(0, 1, 32)
    energy_only = xr.DataArray(np.arange(32.0), dims="energy")  # no nav dim

    def fn(s, a, b, weights, offset, table):
        assert isinstance(table, xr.DataArray)  # passed unchanged
        return (s * weights).sum() * a + b + offset

    out = si.signal.map(fn, a=a, b=b, weights=weights, offset=3.0, table=energy_only)
    ref = (si.values * weights).sum(-1) + 2 + 3
    np.testing.assert_allclose(out.values, ref, rtol=1e-5)


def test_iterated_kwarg_missing_navigation_dims(si):
    k = xr.DataArray(np.arange(5.0), dims="x")
    with pytest.raises(ValueError, match=r"'k'.*not \('y',\)"):
        si.signal.map(lambda s, k: s[0], k=k)


def test_iterated_kwarg_wrong_size(si):
    k = xr.DataArray(np.zeros((6, 4)), dims=("y", "x"))
    with pytest.raises(ValueError, match=r"'k'.*\('x',\).*4 vs 5"):
        si.signal.map(lambda s, k: s[0], k=k)


# --- laziness and chunks ------------------------------------------------------


def test_lazy_map_computes_only_the_first_pixel():
    lazy = spectrum_image((6, 5, 32), rank=3, seed=1, chunks={"y": 2}).data
    with raise_if_dask_computes(max_computes=1) as counter:
        out = lazy.signal.map(lambda s: s[:3])
    assert counter.total_computes == 1
    assert out.signal.is_lazy


def test_lazy_map_with_given_output_reads_nothing():
    lazy = spectrum_image((6, 5, 32), rank=3, seed=1, chunks={"y": 2}).data
    with raise_if_dask_computes():
        out = lazy.signal.map(
            lambda s: s[:3], output_dtype="f4", output_signal_sizes={"c": 3}
        )
        ragged = lazy.signal.map(lambda s: s[s > 10], ragged=True)
    np.testing.assert_array_equal(out.values, lazy.values[..., :3])
    assert ragged.signal.is_lazy


@pytest.mark.parametrize("lazy_output", [None, True, False])
def test_lazy_in_out_combinations(si, lazy_output):
    out = si.signal.map(np.max, lazy_output=lazy_output)
    want = si.signal.is_lazy if lazy_output is None else lazy_output
    assert out.signal.is_lazy == want
    np.testing.assert_array_equal(out.values, si.values.max(-1))


def test_navigation_chunks_kept_after_cropping():
    lazy = spectrum_image((10, 9, 32), rank=3, seed=1, chunks={"y": 3, "x": 4}).data
    cropped = lazy.isel(y=slice(1, 8), x=slice(2, None))
    out = cropped.signal.map(lambda s: s[:2])
    assert out.chunks[:2] == cropped.chunks[:2]
    np.testing.assert_array_equal(out.values, cropped.values[..., :2])


def test_split_signal_dims_are_made_whole(si):
    lazy = si.chunk({"y": 2, "x": 3, "energy": 8})
    out = lazy.signal.map(lambda s: s[::-1])
    assert out.chunks == ((2, 2, 2), (3, 2), (32,))
    np.testing.assert_array_equal(out.values, si.values[..., ::-1])


def test_map_from_a_file_keeps_the_file_chunks(tmp_path):
    path = write_spectrum_image(tmp_path / "si.nc", (8, 6, 64), chunks=(2, 6, 64))
    da = xr.open_dataarray(path, engine="h5netcdf", chunks={})
    out = da.signal.map(centre_of_mass)
    assert out.chunks == ((2, 2, 2, 2), (6,))
    np.testing.assert_allclose(
        out.values, expected(da.compute(), centre_of_mass), rtol=1e-6
    )
    da.close()


def test_progress_bar_in_memory(si, capsys):
    out = xsignal.map(si, np.sum, progress=True, lazy_output=False)
    np.testing.assert_allclose(out.values, si.values.sum(-1), rtol=1e-5)


# --- 4D-STEM style: 2D signals ------------------------------------------------


@pytest.fixture
def stem(backend):
    rng = np.random.default_rng(3)
    data = xr.DataArray(
        rng.random((4, 5, 16, 12), dtype="f4"),
        dims=("scan_y", "scan_x", "ky", "kx"),
        coords={"ky": np.arange(16) * 0.1, "kx": np.arange(12) * 0.1},
    )
    data = data.signal.set_signal_dims("ky", "kx")
    return data.chunk({"scan_y": 2, "scan_x": 3}) if backend == "dask" else data


def test_4dstem_centre_of_mass(stem, scheduler):
    out = stem.signal.map(pattern_com, output_signal_sizes={"axis": 2})
    assert out.dims == ("scan_y", "scan_x", "axis")
    v = stem.values
    total = v.sum((-2, -1))
    ref = np.stack(
        [
            (v.sum(-1) * np.arange(16)).sum(-1) / total,
            (v.sum(-2) * np.arange(12)).sum(-1) / total,
        ],
        axis=-1,
    )
    np.testing.assert_allclose(out.values, ref, rtol=1e-5)
    vec = stem.signal.map(
        lambda b: np.stack(
            [
                (b.sum(-1) * np.arange(16)).sum(-1) / b.sum((-2, -1)),
                (b.sum(-2) * np.arange(12)).sum(-1) / b.sum((-2, -1)),
            ],
            axis=-1,
        ),
        vectorized=True,
    )
    np.testing.assert_allclose(vec.values, ref, rtol=1e-5)


def test_4dstem_same_pattern_shape_keeps_k_coords(stem):
    out = stem.signal.map(lambda p: ndimage.gaussian_filter(p, 1.0))
    assert out.signal.signal_dims == ("ky", "kx")
    xr.testing.assert_identical(out.kx, stem.kx)
    np.testing.assert_allclose(
        out.values[1, 2], ndimage.gaussian_filter(stem.values[1, 2], 1.0), rtol=1e-6
    )


# --- vectorized ---------------------------------------------------------------


def test_vectorized_gets_whole_blocks(si, scheduler):
    shapes = []
    lock = threading.Lock()

    def com(block):
        with lock:
            shapes.append(block.shape)
        e = np.arange(block.shape[-1])
        return (block * e).sum(-1) / block.sum(-1)

    out = si.signal.map(com, vectorized=True)
    np.testing.assert_allclose(out.values, expected(si, centre_of_mass), rtol=1e-5)
    want = {(2, 3, 32), (2, 2, 32)} if si.chunks is not None else {(6, 5, 32)}
    assert set(shapes) - {(1, 1, 32)} == want  # (1, 1, 32): the inference call


def test_vectorized_with_iterated_kwarg(si):
    k = xr.DataArray(np.arange(30.0).reshape(5, 6), dims=("x", "y"))
    out = si.signal.map(lambda b, k: b[..., :2] * k[..., None], vectorized=True, k=k)
    np.testing.assert_allclose(out.values, si.values[..., :2] * k.values.T[..., None])


def test_vectorized_wrong_shape(si):
    with pytest.raises(ValueError, match="navigation shape"):
        si.signal.map(lambda b: b.sum(), vectorized=True).compute()
    lazy = si.chunk({"y": 2, "x": -1})

    def bad(b):  # right for the 1-pixel inference, wrong for real blocks
        return b[:1, :1].sum(-1)

    with pytest.raises(ValueError, match=r"block \(y=\d:\d, x=0:5\)"):
        lazy.signal.map(bad, vectorized=True).compute()


# --- errors --------------------------------------------------------------------


def test_func_must_be_callable(si):
    with pytest.raises(TypeError, match="callable"):
        si.signal.map("sum")


def test_func_error_names_the_pixel(si, scheduler):
    bad_pixel = xr.zeros_like(si.isel(energy=0), dtype=int)
    bad_pixel[4, 3] = 1

    def fn(s, flag):
        if flag:
            raise KeyError("no peak here")
        return s.sum()

    with pytest.raises(
        KeyError, match=r"fn raised KeyError on pixel \(y=4, x=3\)"
    ) as e:
        si.signal.map(fn, flag=bad_pixel).compute()
    assert isinstance(e.value.__cause__, KeyError)


def test_func_error_on_the_first_pixel():
    da = xr.DataArray(np.zeros((2, 3)), dims=("x", "e"))
    with pytest.raises(ZeroDivisionError, match=r"pixel \(x=0\)"):
        da.signal.map(lambda s: 1 // 0)


def test_ragged_conflicts(si):
    with pytest.raises(ValueError, match="vectorized"):
        si.signal.map(np.sum, ragged=True, vectorized=True)
    with pytest.raises(ValueError, match="ragged"):
        si.signal.map(np.sum, ragged=True, output_signal_sizes={"a": 1})


def test_no_navigation_dims():
    da = xr.DataArray(np.arange(5.0), dims="e")
    out = da.signal.map(lambda s: s[:2] * 2)
    assert out.dims == ("sig_0",)
    np.testing.assert_array_equal(out.values, [0.0, 2.0])


# --- schedulers that pickle ---------------------------------------------------


def test_processes_scheduler():
    lazy = spectrum_image((6, 5, 32), rank=3, seed=1, chunks={"y": 3}).data
    offset = np.arange(2.0)
    with dask.config.set(scheduler="processes", num_workers=2):
        out = lazy.signal.map(lambda s, offset: s[:2] + offset, offset=offset)
        values = out.values
        with pytest.raises(TypeError, match="'lock'.*pickled"):
            lazy.signal.map(lambda s, lock: s[0], lock=threading.Lock())
    np.testing.assert_allclose(values, lazy.values[..., :2] + offset)


def test_unpicklable_kwarg_fails_clearly_at_compute():
    lazy = spectrum_image((4, 5, 16), rank=2, seed=1, chunks={"y": 2}).data
    out = lazy.signal.map(lambda s, lock: s[0], lock=threading.Lock())  # threads
    with dask.config.set(scheduler="processes", num_workers=2):
        with pytest.raises(TypeError, match="'lock'.*pickled"):
            out.compute()


@pytest.fixture
def client():
    """A cluster for the one test that asks for it: module-scoped, it stayed
    the default scheduler of every later test in this module."""
    with local_client(processes=True, host="127.0.0.1") as c:
        yield c


def test_distributed_cluster(client, tmp_path):
    path = write_spectrum_image(tmp_path / "si.nc", (8, 6, 64), chunks=(2, 6, 64))
    da = xr.open_dataarray(path, engine="h5netcdf", chunks={})
    k = xr.DataArray(np.arange(48.0).reshape(6, 8), dims=("x", "y"))
    out = da.signal.map(lambda s, k: centre_of_mass(s) + k, k=k)
    ref = expected(da.compute(), centre_of_mass) + k.values.T
    np.testing.assert_allclose(out.compute().values, ref, rtol=1e-6)
    with pytest.raises(TypeError, match="'lock'.*pickled"):
        da.signal.map(lambda s, lock: s[0], lock=threading.Lock())

    def fails_at(s, k):
        if k == 13.0:  # k[x=1, y=5] = 1 * 8 + 5
            raise KeyError("no peak")
        return s[0]

    with pytest.raises(KeyError, match=r"pixel \(y=5, x=1\)"):
        da.signal.map(
            fails_at, k=k, output_dtype="f4", output_signal_sizes={}
        ).compute()
    da.close()


# --- map_blocks and map_overlap ----------------------------------------------


def test_map_blocks_keeps_coords_and_marking(si):
    out = si.signal.map_blocks(lambda b: b * 2)
    assert out.signal.is_lazy == si.signal.is_lazy
    assert out.chunks == si.chunks
    xr.testing.assert_identical(out, si * 2)


def test_map_blocks_changed_dim_by_name(si):
    out = si.signal.map_blocks(lambda b: b[..., ::2], chunks={"energy": 16})
    assert out.signal.is_lazy == si.signal.is_lazy
    assert out.sizes["energy"] == 16
    assert "energy" not in out.coords and "y" in out.coords
    assert out.signal.signal_dims == ("energy",)
    np.testing.assert_array_equal(out.values, si.values[..., ::2])
    with pytest.raises(ValueError, match="'e' is not a dim"):
        si.signal.map_blocks(lambda b: b, chunks={"e": 3})


def test_map_blocks_drop_and_new_dims(si):
    def stats(b):  # reduce the energy axis to two numbers per pixel
        return np.stack([b.min(-1), b.max(-1)], axis=-1)

    out = si.signal.map_blocks(stats, drop_dims=["energy"], new_dims={"stat": 2})
    assert out.dims == ("y", "x", "stat")
    assert out.signal.signal_dims == ("stat",)
    assert out.signal.is_lazy == si.signal.is_lazy
    xr.testing.assert_identical(out.x, si.x)
    ref = np.stack([si.values.min(-1), si.values.max(-1)], axis=-1)
    np.testing.assert_array_equal(out.values, ref)


def test_map_blocks_split_dropped_dim_is_made_whole(si):
    lazy = si.chunk({"y": 2, "energy": 8})
    out = lazy.signal.map_blocks(lambda b: b.sum(-1), drop_dims=["energy"])
    assert out.chunks == lazy.chunks[:2]
    np.testing.assert_allclose(out.values, si.values.sum(-1), rtol=1e-5)


def test_map_blocks_undeclared_shape_change(si):
    with pytest.raises(ValueError, match="declared; pass chunks"):
        si.signal.map_blocks(lambda b: b[..., ::2]).compute()
    with pytest.raises(ValueError, match="already a dim"):
        si.signal.map_blocks(lambda b: b, new_dims={"x": 2})


def test_map_overlap_matches_a_whole_array_filter(si, scheduler):
    def smooth(b):
        return ndimage.uniform_filter(b, size=(3, 3, 1), mode="mirror")

    out = si.signal.map_overlap(smooth, {"y": 1, "x": 1}, boundary="reflect")
    ref = ndimage.uniform_filter(si.values, size=(3, 3, 1), mode="reflect")
    assert out.signal.is_lazy == si.signal.is_lazy
    np.testing.assert_allclose(out.values, ref, rtol=1e-5)
    xr.testing.assert_identical(out.energy, si.energy)


def test_map_overlap_bad_depth(si):
    with pytest.raises(ValueError, match="'z' is not a dim"):
        si.signal.map_overlap(lambda b: b, {"z": 1})
    with pytest.raises(ValueError, match="negative"):
        si.signal.map_overlap(lambda b: b, {"x": -1})


def test_demo_map_step(tmp_path):
    from xsignal.demo import DemoState, step_map, step_open, step_write

    state = DemoState(folder=tmp_path, shape=(6, 5, 64), progress=False)
    step_write(state)
    step_open(state)
    text = step_map(state)
    assert "centre of mass of 30 spectra" in text
    image = state.results["centre_of_mass"]
    data = state.data.values
    energy = state.data.energy.values
    ref = (data * energy).sum(-1) / data.sum(-1)
    np.testing.assert_allclose(image.values, ref, rtol=1e-5)
    state.data.close()


def test_marking_not_last_dims_order():
    da = spectrum_image((4, 3, 8), rank=2, seed=2).data
    moved = da.transpose("energy", "x", "y")  # signal dim first, nav reversed
    out = moved.signal.map(lambda s: s[:2])
    assert out.dims == ("x", "y", "sig_0")
    np.testing.assert_array_equal(out.values, da.values[..., :2].transpose(1, 0, 2))


@st.composite
def chunked_case(draw):
    ny, nx, ne = (
        draw(st.integers(1, 6)),
        draw(st.integers(1, 6)),
        draw(st.integers(1, 5)),
    )
    chunks = {"y": draw(st.integers(1, ny)), "x": draw(st.integers(1, nx))}
    k_chunks = {"y": draw(st.integers(1, ny)), "x": draw(st.integers(1, nx))}
    return (ny, nx, ne), chunks, k_chunks, draw(st.booleans())


@settings(max_examples=25, deadline=None)
@given(chunked_case())
def test_random_chunkings_match_numpy(case):
    (ny, nx, ne), chunks, k_chunks, vectorized = case
    rng = np.random.default_rng(ny * 100 + nx * 10 + ne)
    da = xr.DataArray(rng.random((ny, nx, ne)), dims=("y", "x", "e")).chunk(chunks)
    k = xr.DataArray(rng.random((nx, ny, 2)), dims=("x", "y", "c")).chunk(k_chunks)
    if vectorized:
        out = da.signal.map(lambda b, k: b.sum(-1)[..., None] * k, vectorized=True, k=k)
    else:
        out = da.signal.map(lambda s, k: s.sum() * k, k=k)
    assert out.chunks[:2] == da.chunks[:2]
    ref = da.values.sum(-1)[..., None] * k.values.transpose(1, 0, 2)
    np.testing.assert_allclose(out.values, ref)


def test_result_of_the_wrong_type_names_the_pixel(si):
    def fn(s):
        return "no peak" if s.sum() == si.values[2, 1].sum() else s.sum()

    with pytest.raises(ValueError, match=r"'no peak' on pixel \(y=2, x=1\)"):
        si.signal.map(fn).compute()
    out = si.signal.map(fn, ragged=True).values  # anything goes with ragged
    assert out[2, 1] == "no peak"
    # None becomes NaN in a float output (numpy's conversion): failed fits
    target = si.values[2, 1].sum()
    nan = si.signal.map(lambda s: None if s.sum() == target else 1.0).values
    assert np.isnan(nan[2, 1]) and np.isnan(nan).sum() == 1


def test_complex_output_dtype(si):
    out = si.signal.map(lambda s: np.sqrt(np.complex128(s[:3]) - 50))
    assert out.dtype == np.complex128
    np.testing.assert_allclose(out.values, np.sqrt(si.values[..., :3] - 50 + 0j))


def test_all_navigation_dims_gives_scalars(backend):
    da = xr.DataArray(np.arange(6.0).reshape(2, 3), dims=("y", "x"))
    da = da.signal.set_signal_dims()  # no signal dims: every pixel is a number
    da = da.chunk({"y": 1}) if backend == "dask" else da
    seen = []
    out = da.signal.map(lambda v, e: seen.append(np.ndim(v)) or v**e, e=2)
    np.testing.assert_array_equal(out.values, np.arange(6.0).reshape(2, 3) ** 2)
    assert set(seen) == {0}


@pytest.mark.parametrize("lazy", [False, True])
def test_map_on_a_single_pixel_calls_once(lazy):
    """An array with no navigation dims is one pixel: one call, its result."""
    energy = ("energy", np.arange(16.0), {"units": "eV"})
    da = xr.DataArray(np.arange(16.0), dims=("energy",), coords={"energy": energy})
    da = da.chunk() if lazy else da
    calls = []

    def total(s):
        calls.append(s.shape)
        return s.sum()

    out = da.signal.map(total)
    assert out.dims == () and float(out) == 120.0
    doubled = da.signal.map(lambda s: s * 2)
    assert doubled.dims == ("energy",)
    assert doubled.coords["energy"].attrs["units"] == "eV"
    np.testing.assert_array_equal(doubled.values, np.arange(16.0) * 2)
    pair = da.signal.map(lambda s: np.array([s.min(), s.max()]))
    np.testing.assert_array_equal(pair.values, [0.0, 15.0])
    assert all(shape == (16,) for shape in calls)


def test_map_keeps_navigation_coords_and_their_units(si):
    si = si.assign_coords(x=("x", np.arange(si.sizes["x"]) * 0.5, {"units": "nm"}))
    out = si.signal.map(lambda s: s.max())
    assert out.coords["x"].attrs["units"] == "nm"
    np.testing.assert_array_equal(out.coords["x"].values, si.coords["x"].values)
