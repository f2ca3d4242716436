// pybind11 bindings of the kernels in kernels.hpp. Compiled once per instruction-set target
// (CMakeLists.txt): omnistream._core for the portable baseline, which also says which targets
// the CPU runs (cpu_targets), and omnistream._core_<target> for the others; Python imports the
// best one (omnistream.kernels.targets). Every binding checks shapes, accepts any strided or
// differently typed array (copied to a contiguous float32 or float64 buffer) and releases the
// GIL while the kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels.hpp"
#include "targets.hpp"

namespace py = pybind11;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

template <class T>
py::array_t<T> baseline(carray<T> x, std::int64_t window, double drop) {
  require(x.ndim() == 2, "baseline: x must be 2-D (rows, length)");
  require(window >= 1, "baseline: window must be >= 1");
  require(drop >= 0.0 && drop < 1.0, "baseline: drop must be in [0, 1)");
  const auto rows = static_cast<std::size_t>(x.shape(0)), length = static_cast<std::size_t>(x.shape(1));
  py::array_t<T> out({x.shape(0), x.shape(1)});
  const T* src = x.data();
  T* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    omnistream::baseline(src, dst, rows, length, static_cast<std::size_t>(window), drop);
  }
  return out;
}

template <class T>
py::array_t<double> cmnd(carray<T> x, carray<std::int64_t> periods) {
  require(x.ndim() == 2, "cmnd: x must be 2-D (rows, length)");
  require(periods.ndim() == 1 && periods.shape(0) > 0, "cmnd: periods must be a non-empty 1-D array");
  for (py::ssize_t p = 0; p < periods.shape(0); ++p)
    require(periods.data()[p] >= 1 && periods.data()[p] < x.shape(1),
            "cmnd: every period must be in [1, length)");
  py::array_t<double> out({x.shape(0), periods.shape(0)});
  const T* src = x.data();
  const std::int64_t* per = periods.data();
  double* dst = out.mutable_data();
  const auto rows = static_cast<std::size_t>(x.shape(0)), length = static_cast<std::size_t>(x.shape(1));
  const auto np = static_cast<std::size_t>(periods.shape(0));
  {
    py::gil_scoped_release nogil;
    omnistream::cmnd(src, dst, rows, length, per, np);
  }
  return out;
}

template <class T>
void check_ncc_shapes(const carray<T>& ref, const carray<T>& segments, const carray<T>& w) {
  require(ref.ndim() == 2 && segments.ndim() == 3 && w.ndim() == 1,
          "weighted_ncc: ref must be (m, n), segments (count, m, n), w (m,)");
  require(segments.shape(1) == ref.shape(0) && segments.shape(2) == ref.shape(1) && w.shape(0) == ref.shape(0),
          "weighted_ncc: ref, segments and w shapes disagree");
  require(ref.shape(1) >= 1, "weighted_ncc: segments must have at least one time point");
}

template <class T>
py::array_t<T> weighted_ncc(carray<T> ref, carray<T> segments, carray<T> w) {
  check_ncc_shapes(ref, segments, w);
  py::array_t<T> out({segments.shape(0), segments.shape(2)});
  const T *pr = ref.data(), *ps = segments.data(), *pw = w.data();
  T* dst = out.mutable_data();
  const auto count = static_cast<std::size_t>(segments.shape(0)), m = static_cast<std::size_t>(ref.shape(0)),
             n = static_cast<std::size_t>(ref.shape(1));
  {
    py::gil_scoped_release nogil;
    omnistream::weighted_ncc(pr, ps, pw, dst, count, m, n);
  }
  return out;
}

template <class T>
py::tuple best_shift(carray<T> ref, carray<T> segments, carray<T> w) {
  check_ncc_shapes(ref, segments, w);
  py::array_t<std::int64_t> shift(segments.shape(0));
  py::array_t<T> value(segments.shape(0));
  const T *pr = ref.data(), *ps = segments.data(), *pw = w.data();
  std::int64_t* dst_shift = shift.mutable_data();
  T* dst_value = value.mutable_data();
  const auto count = static_cast<std::size_t>(segments.shape(0)), m = static_cast<std::size_t>(ref.shape(0)),
             n = static_cast<std::size_t>(ref.shape(1));
  {
    py::gil_scoped_release nogil;
    omnistream::best_shift(pr, ps, pw, dst_shift, dst_value, count, m, n);
  }
  return py::make_tuple(shift, value);
}

template <class T>
py::array_t<T> align(carray<T> segments, carray<std::int64_t> shift) {
  require(segments.ndim() == 3 && shift.ndim() == 1 && shift.shape(0) == segments.shape(0),
          "align: segments must be (count, m, n) and shift (count,)");
  py::array_t<T> out({segments.shape(0), segments.shape(1), segments.shape(2)});
  const T* src = segments.data();
  const std::int64_t* ps = shift.data();
  T* dst = out.mutable_data();
  const auto count = static_cast<std::size_t>(segments.shape(0)), m = static_cast<std::size_t>(segments.shape(1)),
             n = static_cast<std::size_t>(segments.shape(2));
  {
    py::gil_scoped_release nogil;
    if (n > 0) omnistream::align(src, ps, dst, count, m, n);
  }
  return out;
}

bool is_float32(const py::array& x) { return x.dtype().is(py::dtype::of<float>()); }

// Dispatches on the dtype of the first array: float32 stays float32, anything else runs in
// float64. Inputs are cast (and made contiguous) by array_t's forcecast.
#define OMNISTREAM_DISPATCH(name, first, ...) \
  (is_float32(first) ? py::object(name<float>(__VA_ARGS__)) : py::object(name<double>(__VA_ARGS__)))

}  // namespace

PYBIND11_MODULE(OMNISTREAM_MODULE, m) {
  m.doc() = "omnistream numeric kernels in C++ (GIL released; float32 stays float32, else float64)";
  m.attr("TARGET") = omnistream::kTarget;
  m.attr("VECTOR_BYTES") = omnistream::kVectorBytes;
  m.def("cpu_targets", &omnistream::cpu_targets,
        "The kernel targets this CPU runs, best first; the last is the baseline.");
  m.def("baseline", [](const py::array& x, std::int64_t window, double drop) {
    return OMNISTREAM_DISPATCH(baseline, x, x, window, drop);
  }, py::arg("x"), py::arg("window"), py::arg("drop") = 0.05,
  "Robust baseline of each row of x (rows, length): drop extremes, interpolate, moving average.");
  m.def("cmnd", [](const py::array& x, const py::array& periods) {
    return OMNISTREAM_DISPATCH(cmnd, x, x, periods);
  }, py::arg("x"), py::arg("periods"), "CMND of each row of x at each period -> (rows, periods) float64.");
  m.def("weighted_ncc", [](const py::array& ref, const py::array& segments, const py::array& w) {
    return OMNISTREAM_DISPATCH(weighted_ncc, segments, ref, segments, w);
  }, py::arg("ref"), py::arg("segments"), py::arg("w"), "Weighted NCC at every circular shift (count, n).");
  m.def("best_shift", [](const py::array& ref, const py::array& segments, const py::array& w) {
    return OMNISTREAM_DISPATCH(best_shift, segments, ref, segments, w);
  }, py::arg("ref"), py::arg("segments"), py::arg("w"), "(shift, ncc) of the best circular shift per segment.");
  m.def("align", [](const py::array& segments, const py::array& shift) {
    return OMNISTREAM_DISPATCH(align, segments, segments, shift);
  }, py::arg("segments"), py::arg("shift"), "Roll each segment right by its shift along the last axis.");
}
