"""Every backend of every kernel against the plain references, as property tests."""

from __future__ import annotations

import importlib
import platform

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omnistream.kernels import reference as ref
from omnistream import kernels as facade
from omnistream.kernels import numba_twin as kernels_numba, numpy_twin as kernels_numpy
from omnistream.kernels import targets

_core = importlib.import_module("omnistream._core")
# Every compiled copy of the C++ kernels (one per instruction-set target); one this CPU cannot
# run is skipped, by name.
BUILT_TARGETS = ["avx512", "avx2", "sse4", _core.TARGET] if platform.machine() in ("x86_64", "AMD64") \
    else [_core.TARGET]
RUNNABLE = targets.runnable()
BACKENDS = {f"cpp-{t}": importlib.import_module(targets.module_name(t))
            for t in BUILT_TARGETS if t in RUNNABLE} | {"numba": kernels_numba, "numpy": kernels_numpy}
CPP_PARAMS = [pytest.param(f"cpp-{t}", marks=() if t in RUNNABLE else pytest.mark.skip(
    reason=f"kernel target {t} skipped: this CPU lacks its instructions")) for t in BUILT_TARGETS]
BACKEND_PARAMS = [*CPP_PARAMS, "numba", "numpy"]
DTYPES = [np.float32, np.float64]
finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
normal = st.floats(-10, 10, width=32, allow_subnormal=False)  # subnormals make float32 NCC ill-conditioned


def tol(dtype) -> dict:
    return {"rtol": 1e-4, "atol": 1e-3} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-8}


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_baseline_matches_reference(name, dtype, data):
    rows = data.draw(st.integers(1, 4))
    length = data.draw(st.integers(1, 80))
    x = data.draw(hnp.arrays(dtype, (rows, length), elements=st.one_of(finite, st.just(np.nan))))
    window = data.draw(st.integers(1, 15))
    drop = data.draw(st.sampled_from([0.0, 0.05, 0.2]))
    got = BACKENDS[name].baseline(np.ascontiguousarray(x), window, drop)
    assert got.dtype == dtype
    want = np.stack([ref.naive_baseline(r, window, drop) for r in x])
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("drop", [0.05, 0.2])
@pytest.mark.parametrize("window", [12, 50])
def test_baseline_of_long_rows_follows_the_naive_one(name, drop, window):
    """Rows long enough for C++'s sampled guess at the drop threshold (and, with spikes at every
    16th point, for the guess to fail and the full selection to run), ties among deviations,
    missing points, and windows summed directly (12) or by a running sum (50)."""
    rng = np.random.default_rng(7)
    noise, ties, spikes = rng.standard_normal(3000), np.round(rng.standard_normal(3000)), rng.standard_normal(3000)
    spikes[::16] = rng.uniform(50, 100, len(spikes[::16]))
    noise[rng.choice(3000, 40, replace=False)] = np.nan
    x = np.stack([noise, ties, spikes])
    want = np.stack([ref.naive_baseline(row, window, drop) for row in x])
    np.testing.assert_allclose(BACKENDS[name].baseline(x, window, drop), want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_cmnd_matches_reference(name, dtype, data):
    length = data.draw(st.integers(3, 60))
    x = data.draw(hnp.arrays(dtype, (3, length), elements=finite))
    periods = np.array(sorted(set(data.draw(st.lists(st.integers(1, length - 1), min_size=1, max_size=4)))))
    got = BACKENDS[name].cmnd(np.ascontiguousarray(x), periods)
    want = np.array([[ref.naive_cmnd(r, int(p)) for p in periods] for r in x])
    np.testing.assert_allclose(got, want, **({"rtol": 1e-3, "atol": 1e-6} if dtype == np.float32
                                             else {"rtol": 1e-9, "atol": 1e-12}))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_weighted_sq_dist_matches_reference(dtype, data):  # one BLAS formulation serves every backend
    m, n = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 12))
    a = data.draw(hnp.arrays(dtype, (data.draw(st.integers(1, 6)), m, n), elements=normal))
    b = data.draw(hnp.arrays(dtype, (data.draw(st.integers(1, 6)), m, n), elements=normal))
    w = data.draw(hnp.arrays(dtype, (m,), elements=st.floats(0, 5, width=32)))
    got = facade.weighted_sq_dist(a, b, w)
    want = np.array([[ref.naive_weighted_sq_dist(x, y, w) for y in b] for x in a])
    # The GEMM identity |a|^2 + |b|^2 - 2 a.b cancels: its rounding error scales with the norms,
    # not with the distance (identical segments give a few float32 ulps of |a|^2, not 0).
    norms = [float((x.astype(np.float64) ** 2 @ np.repeat(w, n).astype(np.float64)).max()) for x in
             (a.reshape(len(a), -1), b.reshape(len(b), -1))]
    scale = max(float(np.abs(want).max()), sum(norms)) + 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-12) * scale)


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_weighted_ncc_matches_reference(name, dtype, data):
    m, n = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 16))
    elements = normal
    r = data.draw(hnp.arrays(dtype, (m, n), elements=elements))
    segs = data.draw(hnp.arrays(dtype, (data.draw(st.integers(1, 5)), m, n), elements=elements))
    w = data.draw(hnp.arrays(dtype, (m,), elements=st.floats(0, 5, width=32)))
    got = BACKENDS[name].weighted_ncc(r, segs, w)
    want = np.array([[ref.naive_weighted_ncc(r, s, w, k) for k in range(n)] for s in segs])
    np.testing.assert_allclose(got, want, **({"rtol": 1e-4, "atol": 1e-3} if dtype == np.float32
                                             else {"rtol": 1e-9, "atol": 1e-9}))


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("scale", [np.finfo(np.float32).tiny, 1e-40])
def test_weighted_ncc_of_tiny_float32_rows_is_not_zero(name, scale):
    """Squares of float32 values near (or under) the smallest normal number underflow; the
    norms must still find these rows non-zero, as the float64 reference does."""
    r = np.array([[1.0, 2.0, 0.5]], dtype=np.float32)
    segs = (np.array([[[1.0, 2.0, 0.5]]]) * scale).astype(np.float32)
    w = np.ones(1, dtype=np.float32)
    got = BACKENDS[name].weighted_ncc(r, segs, w)
    want = np.array([[ref.naive_weighted_ncc(r, segs[0], w, k) for k in range(3)]])
    assert got[0, 0] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [60, 49, 16])
@pytest.mark.parametrize("m", [4, 5])
def test_weighted_ncc_of_segment_lengths_follows_the_naive_one(name, dtype, n, m):
    """C++ takes the FFT for lengths of factors 2, 3 and 5 (60, 16) and the circulant GEMM
    otherwise (49); a batch of segments shares the SIMD lanes and rows share a complex FFT in
    pairs (m odd leaves one alone), so a part batch, zero, NaN, infinite and tiny rows are mixed in."""
    rng = np.random.default_rng(8)
    r, segs, w = rng.standard_normal((m, n)), rng.standard_normal((21, m, n)), rng.uniform(0.1, 2.0, m)
    segs[1, 0], segs[2, 1, 5], segs[3, 2, 7], segs[4, 3] = 0.0, np.nan, np.inf, segs[4, 3] * 1e-39
    r[1, 3] = np.inf  # the reference's row 1 then contributes nothing either
    r, segs, w = r.astype(dtype), segs.astype(dtype), w.astype(dtype)
    got = BACKENDS[name].weighted_ncc(r, segs, w)
    want = np.array([[ref.naive_weighted_ncc(r, s, w, k) for k in range(n)] for s in segs])
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_constant_and_nan_rows_follow_the_references(name, dtype):
    """A segment row of zeros or with a NaN has no norm and contributes 0 to the NCC (a constant
    row is an ordinary one); CMND of a constant or zero series is 1 (no structure), and NaN in
    a series is filled by interpolation before the baseline is taken."""
    rng = np.random.default_rng(1)
    r, segs, w = rng.standard_normal((3, 8)), rng.standard_normal((4, 3, 8)), np.array([1.0, 2.0, 0.5])
    segs[0, 1], segs[1, 2], segs[2, 0, 3] = 0.0, 3.0, np.nan
    r, segs, w = r.astype(dtype), segs.astype(dtype), w.astype(dtype)
    got = BACKENDS[name].weighted_ncc(r, segs, w)
    want = np.array([[ref.naive_weighted_ncc(r, s, w, k) for k in range(8)] for s in segs])
    np.testing.assert_allclose(got, want, **tol(dtype))
    series = np.vstack([np.full(50, 3.0), np.zeros(50), np.r_[np.full(5, np.nan), np.arange(45.0)]]).astype(dtype)
    cm = BACKENDS[name].cmnd(series, np.array([5, 7]))
    np.testing.assert_allclose(cm[:2], 1.0)
    np.testing.assert_allclose(cm, [[ref.naive_cmnd(s, t) for t in (5, 7)] for s in series], **tol(dtype))
    base = BACKENDS[name].baseline(series, 3, 0.05)
    assert np.isfinite(base).all()
    np.testing.assert_allclose(base, [ref.naive_baseline(s, 3, 0.05) for s in series], **tol(dtype))


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_align_is_numpy_roll(name, data):
    count, m, n = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12))
    segs = data.draw(hnp.arrays(np.float64, (count, m, n), elements=finite))
    shift = np.array(data.draw(st.lists(st.integers(-30, 30), min_size=count, max_size=count)), dtype=np.int64)
    got = BACKENDS[name].align(segs, shift)
    want = np.stack([np.roll(s, k, axis=-1) for s, k in zip(segs, shift)])
    np.testing.assert_array_equal(got, want)


def test_best_shift_recovers_a_known_phase():
    rng = np.random.default_rng(0)
    t = np.arange(60)
    base = np.stack([np.sin(2 * np.pi * t / 60 * (j + 1)) + 0.01 * rng.standard_normal(60) for j in range(8)])
    true_shift = np.array([0, 5, 17, 42])
    segs = np.stack([np.roll(base, -k, axis=-1) for k in true_shift])
    shift, value = facade.best_shift(base, segs, np.ones(8))
    np.testing.assert_array_equal(shift, true_shift)
    np.testing.assert_allclose(facade.align(segs, shift), np.broadcast_to(base, segs.shape))
    assert np.all(value > 7.9)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [20, 49])  # C++: the FFT path, then the circulant GEMM
def test_bounded_memory_kernels_equal_the_whole_matrices(backend, dtype, n, monkeypatch):
    """best_shift keeps O(count) memory (a running maximum in C++, blocks of NCC rows in the
    twins), distances are swept in blocks, and the pivot is the segment nearest the weighted
    mean: each must equal the argmax / argmin over the whole matrix, ties to the first shift."""
    rng = np.random.default_rng(6)
    segs, w = rng.standard_normal((97, 3, n)).astype(dtype), rng.uniform(0.5, 2.0, 3).astype(dtype)
    segs[4] = 0.0  # no norm: NCC 0 at every shift, an exact tie
    monkeypatch.setattr(facade, "_backend", BACKENDS[backend])
    monkeypatch.setattr(facade, "BACKEND_NAME", backend.split("-")[0])
    monkeypatch.setattr(facade, "BLOCK_ELEMENTS", 7 * 3 * n)  # 7 segments of NCC, 1 distance row at a time
    ncc = BACKENDS[backend].weighted_ncc(segs[0], segs, w)
    shift, value = facade.best_shift(segs[0], segs, w)
    best = ncc.max(axis=1)  # a BLAS may round a block differently from the whole: equal up to the dtype
    np.testing.assert_allclose(value, best, **tol(dtype))
    np.testing.assert_allclose(ncc[np.arange(len(segs)), shift], best, **tol(dtype))
    if backend.startswith("cpp"):  # the same kernel either way: exactly the argmax
        np.testing.assert_array_equal(shift, ncc.argmax(axis=1))
    assert shift[4] == 0
    whole = facade.weighted_sq_dist(segs, segs, w)
    swept = np.concatenate([block for _, block in facade.weighted_sq_dist_blocks(segs, segs, w)])
    np.testing.assert_allclose(swept, whole, **tol(dtype))
    assert facade.pivot(segs, w) == whole.astype(np.float64).sum(axis=1).argmin()
    idx, dist = facade.assign_nearest(segs, segs[10:20], w)
    np.testing.assert_array_equal(idx, whole[:, 10:20].argmin(axis=1))
    np.testing.assert_allclose(dist, whole[:, 10:20].min(axis=1), **tol(dtype))


def test_facade_accepts_strided_and_integer_input():
    rng = np.random.default_rng(1)
    wide = rng.standard_normal((4, 6, 40))
    strided = wide[:, ::2, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_allclose(facade.baseline(strided, 3), facade.baseline(strided.copy(), 3))
    w = np.ones(3)
    np.testing.assert_allclose(facade.weighted_ncc(strided[0], strided, w),
                               facade.weighted_ncc(strided[0].copy(), strided.copy(), w))
    ints = np.arange(20).reshape(2, 10)
    assert facade.baseline(ints, 2).dtype == np.float64


def test_facade_rejects_bad_shapes():
    with pytest.raises(ValueError):
        facade.weighted_ncc(np.zeros((3, 5)), np.zeros((2, 3, 6)), np.ones(3))
    with pytest.raises(ValueError):
        facade.cmnd(np.zeros((2, 10)), [10])
    with pytest.raises(ValueError):
        _core.baseline(np.zeros((2, 3)), 0, 0.05)


def test_periodic_weights_favour_periodic_metrics():
    rng = np.random.default_rng(2)
    t = np.arange(600)
    periodic = np.sin(2 * np.pi * t / 50)
    noise = rng.standard_normal(600)
    x = np.stack([np.stack([periodic + 0.05 * rng.standard_normal(600), noise]) for _ in range(3)])
    pw = facade.periodic_weights(facade.periodicity(x, [50]), alpha=1.0)
    assert pw[0] > 10 * pw[1]


def test_pivot_and_assign_nearest():
    segs = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[10.0, 10.0]]])
    w = np.ones(1)
    assert facade.pivot(segs, w) == 1
    idx, dist = facade.assign_nearest(np.array([[[9.0, 9.0]], [[0.2, 0.0]]]), segs[[0, 2]], w)
    np.testing.assert_array_equal(idx, [1, 0])
    np.testing.assert_allclose(dist, [2.0, 0.04])


@pytest.mark.parametrize("name", BACKEND_PARAMS)
def test_cmnd_of_long_smooth_and_odd_series_follows_the_naive_one(name):
    """Long rows of every kind, more than one batch of the C++ FFT (16 rows) and a part batch:
    noise, periodic, random walk, a ramp on a large offset, a very slow sine (where the FFT
    identity cancels and the first lags must be summed directly), a spike train, constant,
    zero, NaN and infinite rows, and a subnormal one (its scale to unit spread would overflow)."""
    rng = np.random.default_rng(5)
    t = np.arange(700)
    kinds = [rng.standard_normal(700), np.sin(2 * np.pi * t / 24) + 0.01 * rng.standard_normal(700),
             np.cumsum(rng.standard_normal(700)), 1e5 + t / 700, 1e5 + 1e-3 * np.sin(2 * np.pi * t / 5000),
             (t % 24 == 0) * 1.0, np.full(700, 7.0), np.zeros(700), np.r_[np.nan, rng.standard_normal(699)],
             1e-310 * rng.standard_normal(700), np.r_[np.inf, rng.standard_normal(699)]]
    x = np.array([kinds[i % len(kinds)] * (1 + i) for i in range(41)])
    periods = np.array([2, 3, 24, 150, 299])
    got = BACKENDS[name].cmnd(x, periods)
    want = [[ref.naive_cmnd(row, int(p)) for p in periods] for row in x]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", CPP_PARAMS)
def test_cmnd_sums_the_first_lags_directly_where_the_fft_identity_cancels(name):
    """On a long smooth row d(1) is ~1e-9 of the row's energy, below what the FFT identity
    resolves (its error is ~eps E log n): the C++ kernel must sum those lags directly."""
    t = np.arange(50_000)
    x = np.stack([1e3 + t / 50_000, np.sin(2 * np.pi * t / 80_000), np.sin(2 * np.pi * t / 40_000) ** 3])
    periods = np.array([2, 3, 100])
    want = [[ref.naive_cmnd(row, int(p)) for p in periods] for row in x]
    np.testing.assert_allclose(BACKENDS[name].cmnd(x, periods), want, rtol=1e-9, atol=1e-12)


def test_the_fft_cmnd_agrees_with_the_naive_one():
    rng = np.random.default_rng(4)
    t = np.arange(300)
    x = np.stack([np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(300), rng.standard_normal(300)])
    periods = np.array([12, 24, 60])
    want = [[ref.naive_cmnd(row, int(p)) for p in periods] for row in x]
    np.testing.assert_allclose(ref.cmnd_fft(x, periods), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", ["weighted_ncc", "weighted_sq_dist"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_fastest_numpy_references_agree_with_the_naive_ones(kernel, dtype):
    rng = np.random.default_rng(3)
    segs = rng.standard_normal((7, 4, 12)).astype(dtype)
    segs[2, 1] = 0.0  # a zero-norm metric
    segs[3, 0] = 5.0  # a constant one
    w = rng.uniform(0.1, 2.0, 4)
    for name, fast in ref.FASTEST_NUMPY[kernel].items():
        if kernel == "weighted_ncc":
            got = fast(segs[0], segs, w)
            want = np.array([[ref.naive_weighted_ncc(segs[0], s, w, k) for k in range(12)] for s in segs])
        else:
            flat = segs.reshape(7, -1)
            got = fast(flat, flat, np.repeat(w, 12).astype(dtype))
            want = np.array([[ref.naive_weighted_sq_dist(x.reshape(4, 12), y.reshape(4, 12), w) for y in segs]
                             for x in segs])
        np.testing.assert_allclose(got, want, **tol(dtype), err_msg=name)


@pytest.mark.parametrize("name", CPP_PARAMS)
def test_the_thread_count_changes_no_result(name, monkeypatch):
    core = BACKENDS[name]
    rng = np.random.default_rng(3)
    segs, w = rng.standard_normal((300, 4, 24)), rng.uniform(0.5, 2.0, 4)
    series = rng.standard_normal((40, 500))
    results = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("OMNISTREAM_THREADS", threads)
        results.append((core.weighted_ncc(segs[0], segs, w), core.baseline(series, 12, 0.05),
                        core.cmnd(series, np.array([12, 48]))))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
