// Numeric kernels of omnistream (OmniTransfer section 4): robust baselines, CMND and
// weighted NCC phase alignment (weighted squared distances are one BLAS GEMM, called from
// Python: omnistream.kernels.weighted_sq_dist). Header-only, templated on
// the floating type, free of Python so that both the pybind11 module and the C++ tests
// use the same code. All inputs are C-contiguous row-major buffers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

// The instruction set this copy of the kernels is compiled for, and its vector width. One build
// holds several copies (CMakeLists.txt: a module per target, each compiled with its flags) and
// Python picks the best one the CPU runs (omnistream.kernels.targets). Each copy lives in an
// inline namespace of its own, so that copies compiled for different CPUs never merge.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define OMNISTREAM_TARGET avx512
#define OMNISTREAM_VECTOR_BYTES 64
#elif defined(__AVX2__) && defined(__FMA__)
#define OMNISTREAM_TARGET avx2
#define OMNISTREAM_VECTOR_BYTES 32
#elif defined(__SSE4_2__)
#define OMNISTREAM_TARGET sse4
#define OMNISTREAM_VECTOR_BYTES 16
#elif defined(__x86_64__)
#define OMNISTREAM_TARGET sse2
#define OMNISTREAM_VECTOR_BYTES 16
#elif defined(__ARM_NEON)
#define OMNISTREAM_TARGET neon
#define OMNISTREAM_VECTOR_BYTES 16
#else
#define OMNISTREAM_TARGET generic
#define OMNISTREAM_VECTOR_BYTES 16
#endif
#define OMNISTREAM_STR2(x) #x
#define OMNISTREAM_STR(x) OMNISTREAM_STR2(x)

namespace omnistream {
inline namespace OMNISTREAM_TARGET {

constexpr const char* kTarget = OMNISTREAM_STR(OMNISTREAM_TARGET);
constexpr std::size_t kVectorBytes = OMNISTREAM_VECTOR_BYTES;

// Threads the kernels use: OMNISTREAM_THREADS when set to a positive number (benchmarks
// compare thread counts with it), else one per hardware thread.
inline std::size_t thread_count() {
  const char* set = std::getenv("OMNISTREAM_THREADS");
  const long wanted = set ? std::strtol(set, nullptr, 10) : 0;
  if (wanted > 0) return static_cast<std::size_t>(wanted);
  return std::max<std::size_t>(1, std::thread::hardware_concurrency());
}

// One vector register of doubles or floats (GCC vector extension; 8 doubles on AVX-512, 4 on
// AVX2, 2 on SSE and NEON): the kernels below keep independent rows, points or segments in its
// lanes, so their blocking follows the target's width.
typedef double double_lanes __attribute__((vector_size(OMNISTREAM_VECTOR_BYTES)));
typedef float float_lanes __attribute__((vector_size(OMNISTREAM_VECTOR_BYTES)));
constexpr std::size_t kLanes = sizeof(double_lanes) / sizeof(double);

// Unaligned loads and stores of a vector (a memcpy of a vector's size is split into 16-byte
// pieces under generic tuning, and goes through general registers when copying a block).
typedef double double_lanes_unaligned
    __attribute__((vector_size(OMNISTREAM_VECTOR_BYTES), aligned(alignof(double)), may_alias));
typedef float float_lanes_unaligned
    __attribute__((vector_size(OMNISTREAM_VECTOR_BYTES), aligned(alignof(float)), may_alias));
inline double_lanes load_lanes(const double* p) { return *reinterpret_cast<const double_lanes_unaligned*>(p); }
inline float_lanes load_lanes(const float* p) { return *reinterpret_cast<const float_lanes_unaligned*>(p); }
inline void store_lanes(double* p, double_lanes v) { *reinterpret_cast<double_lanes_unaligned*>(p) = v; }

// The vector of T's lanes. Declared outside templates: a vector attribute written on a dependent
// type is dropped when the type becomes a template argument (std::vector<V> would hold scalars).
template <class T> struct lanes_of;
template <> struct lanes_of<double> { typedef double_lanes type; };
template <> struct lanes_of<float> { typedef float_lanes type; };

// Runs body(begin, end) over [0, n) split into contiguous chunks, one per thread.
template <class Body>
void parallel_for(std::size_t n, Body body, std::size_t min_chunk = 1) {
  std::size_t threads = thread_count();
  threads = std::min(threads, std::max<std::size_t>(1, n / std::max<std::size_t>(1, min_chunk)));
  if (threads <= 1) {
    body(std::size_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads);
  const std::size_t chunk = (n + threads - 1) / threads;
  for (std::size_t t = 0; t < threads; ++t) {
    const std::size_t b = t * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([=] { body(b, e); });
  }
  for (auto& th : pool) th.join();
}

// The n-th largest (n >= 1) of v[0, m). Introselect on all m values mispredicts a branch per
// comparison, so a guess at a value below it is taken from every 16th value, the values at or
// above the guess are gathered without branches, and the selection runs on those few; if the
// guess was too high (fewer than n gathered) it runs on all. scratch holds at least m values.
inline double nth_largest(double* v, std::size_t m, std::size_t n, double* scratch) {
  constexpr std::size_t kStride = 16;
  const std::size_t samples = m / kStride, rank = 2 * n / kStride + 8;  // about twice n's expected rank
  if (rank < samples) {
    for (std::size_t i = 0; i < samples; ++i) scratch[i] = v[i * kStride];
    std::nth_element(scratch, scratch + rank, scratch + samples, std::greater<>());
    const double guess = scratch[rank];
    std::size_t kept = 0;
    for (std::size_t i = 0; i < m; ++i) {
      scratch[kept] = v[i];
      kept += v[i] >= guess;
    }
    if (kept >= n) {
      std::nth_element(scratch, scratch + (n - 1), scratch + kept, std::greater<>());
      return scratch[n - 1];
    }
  }
  std::nth_element(v, v + (n - 1), v + m, std::greater<>());
  return v[n - 1];
}

// Robust baseline of each row of x (rows x length): the count floor(drop * m) of finite points
// farthest from the row mean (m = finite points; ties broken by position) are removed, removed
// and non-finite points are filled by linear interpolation between the nearest kept neighbours
// (constant beyond the ends), then a trailing moving average of `window` points (shorter at
// the start) is applied. A row with no finite point stays NaN.
//
// The farthest points are found by selecting the n_drop-th largest deviation among the values
// (nth_largest, not an index sort with an indirect comparator), then one pass drops everything
// beyond it and the first of its ties. Short windows are summed directly, kLanes windows at a
// time in registers; long ones by a running sum, one dependent add per point.
constexpr std::size_t kBaselineDirectWindow = 32;

template <class T>
void baseline(const T* x, T* out, std::size_t rows, std::size_t length, std::size_t window,
              double drop) {
  parallel_for(rows, [&](std::size_t r0, std::size_t r1) {
    std::vector<double> row(length), dev(length), selected(length), scratch(length), filled(length), sums(length);
    std::vector<char> keep(length);
    for (std::size_t r = r0; r < r1; ++r) {
      T* dst = out + r * length;
      for (std::size_t i = 0; i < length; ++i) row[i] = static_cast<double>(x[r * length + i]);
      double sum0 = 0, sum1 = 0, sum2 = 0, sum3 = 0;  // four chains: a single one waits on each add
      std::size_t finite = 0;
      for (std::size_t i = 0; i < length; ++i) {
        const bool ok = std::isfinite(row[i]);
        keep[i] = ok;
        finite += ok;
        const double v = ok ? row[i] : 0.0;
        switch (i & 3) {
          case 0: sum0 += v; break;
          case 1: sum1 += v; break;
          case 2: sum2 += v; break;
          default: sum3 += v;
        }
      }
      if (finite == 0) {
        std::fill(dst, dst + length, std::numeric_limits<T>::quiet_NaN());
        continue;
      }
      const double mean = ((sum0 + sum1) + (sum2 + sum3)) / static_cast<double>(finite);
      const auto n_drop = static_cast<std::size_t>(std::floor(drop * static_cast<double>(finite)));
      if (n_drop > 0) {
        std::size_t m = 0;
        for (std::size_t i = 0; i < length; ++i) {
          dev[i] = keep[i] ? std::abs(row[i] - mean) : -1.0;  // -1: never among the farthest
          if (keep[i]) selected[m++] = dev[i];
        }
        const double threshold = nth_largest(selected.data(), m, n_drop, scratch.data());
        std::size_t beyond = 0;
        for (std::size_t i = 0; i < length; ++i) beyond += dev[i] > threshold;
        std::size_t ties_to_drop = n_drop - beyond;
        for (std::size_t i = 0; i < length; ++i) {
          if (dev[i] > threshold) keep[i] = 0;
          else if (dev[i] == threshold && ties_to_drop > 0) { keep[i] = 0; --ties_to_drop; }
        }
      }
      // Linear interpolation over the gaps.
      std::ptrdiff_t prev = -1;
      for (std::size_t i = 0; i <= length; ++i) {
        if (i < length && !keep[i]) continue;
        if (i < length) filled[i] = row[i];
        const std::size_t gap_begin = static_cast<std::size_t>(prev + 1);
        for (std::size_t g = gap_begin; g < i; ++g) {
          if (prev < 0) filled[g] = row[i];
          else if (i == length) filled[g] = row[prev];
          else {
            const double t = static_cast<double>(g - prev) / static_cast<double>(i - prev);
            filled[g] = row[prev] + t * (row[i] - row[prev]);
          }
        }
        prev = static_cast<std::ptrdiff_t>(i);
      }
      // Trailing moving average.
      if (window <= kBaselineDirectWindow) {
        std::size_t i = 0;
        for (double acc = 0.0; i < std::min(window - 1, length); ++i) sums[i] = acc += filled[i];
        for (; i + kLanes <= length; i += kLanes) {  // kLanes windows at once, summed in registers
          double_lanes total{};
          for (std::size_t k = 0; k < window; ++k) {
            total += load_lanes(filled.data() + i - k);
          }
          store_lanes(sums.data() + i, total);
        }
        for (; i < length; ++i) sums[i] = std::accumulate(filled.begin() + (i + 1 - window), filled.begin() + (i + 1), 0.0);
      } else {
        double acc = 0.0;
        for (std::size_t i = 0; i < length; ++i) {
          acc += filled[i];
          if (i >= window) acc -= filled[i - window];
          sums[i] = acc;
        }
      }
      for (std::size_t i = 0; i < length; ++i)
        dst[i] = static_cast<T>(sums[i] / static_cast<double>(std::min(i + 1, window)));
    }
  }, 16);
}

template <class T>
inline double dot(const T* a, const T* b, std::size_t n) {
  // Four independent accumulators let the compiler vectorise without -ffast-math.
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += static_cast<double>(a[i]) * b[i];
    s1 += static_cast<double>(a[i + 1]) * b[i + 1];
    s2 += static_cast<double>(a[i + 2]) * b[i + 2];
    s3 += static_cast<double>(a[i + 3]) * b[i + 3];
  }
  for (; i < n; ++i) s0 += static_cast<double>(a[i]) * b[i];
  return (s0 + s1) + (s2 + s3);
}

// Whether a row with this norm takes part in NCC: zero rows, and rows holding a NaN or an
// infinity, contribute 0 (numpy_twin.usable is the NumPy twin).
inline bool usable_norm(double norm) { return norm > 0.0 && std::isfinite(norm); }

// sum_i (a_i - b_i)^2 with four accumulators (vectorised without -ffast-math).
inline double sq_diff_sum(const double* a, const double* b, std::size_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const double d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1], d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; i < n; ++i) s0 += (a[i] - b[i]) * (a[i] - b[i]);
  return (s0 + s1) + (s2 + s3);
}

// Plans (twiddle tables) are built once per size and kept: building one costs thousands of
// sin/cos, as much as transforming a few hundred short rows.
template <class Plan>
const Plan& cached_plan(std::size_t n) {
  static std::mutex guard;
  static std::map<std::size_t, std::unique_ptr<const Plan>> plans;
  const std::lock_guard<std::mutex> lock(guard);
  auto& plan = plans[n];
  if (!plan) plan = std::make_unique<const Plan>(n);
  return *plan;
}

// Mixed-radix complex FFT of any length whose prime factors are 2, 3 and 5 (a segment of 60
// points: 4 x 3 x 5; CMND's zero-padded 2,304: 4^4 x 3^2), on vectors of independent signals,
// one per SIMD lane: the butterflies are plain vertical vector operations with broadcast
// twiddles, so a batch of rows or segments runs at vector speed with no shuffles. Stockham
// form: each stage reads one buffer and writes the other in natural order, no bit reversal.
// After the stages with radices p_1 .. p_{s-1} (product L), buffer index r + M k holds the k-th
// DFT coefficient (k < L) of the subsequence x[r + M t] (M = n / L); a stage of radix p
// combines p such subsequences: t_q = w_{Lp}^{q k} Y[r + M' q + M k] (M' = M / p), then
// Y'[r + M' k + (n / p) a] = sum_q w_p^{q a} t_q, a p-point DFT.
// Whether n >= 2 has no prime factor but 2, 3 and 5: the lengths MixedFftPlan serves.
inline bool is_smooth(std::size_t n) {
  if (n < 2) return false;
  for (std::size_t p : {2, 3, 5})
    while (n % p == 0) n /= p;
  return n == 1;
}

template <class T>
struct MixedFftPlan {
  explicit MixedFftPlan(std::size_t size) : n(size) {
    if (!is_smooth(n)) throw std::invalid_argument("MixedFftPlan: the length must have no prime factor but 2, 3, 5");
    std::size_t rest = n;
    for (std::size_t p : {4, 2, 3, 5})
      while (rest % p == 0 && !(p == 2 && rest % 4 == 0)) radix.push_back(p), rest /= p;
    std::size_t before = 1;
    for (std::size_t p : radix) {  // twiddles w_{Lp}^{q k}, q in [1, p), k in [0, L)
      std::vector<T> re, im;
      for (std::size_t q = 1; q < p; ++q)
        for (std::size_t k = 0; k < before; ++k) {
          const double angle = -2.0 * M_PI * static_cast<double>(q * k) / static_cast<double>(before * p);
          re.push_back(static_cast<T>(std::cos(angle)));
          im.push_back(static_cast<T>(std::sin(angle)));
        }
      twiddle_re.push_back(std::move(re));
      twiddle_im.push_back(std::move(im));
      before *= p;
    }
  }
  std::size_t n;
  std::vector<std::size_t> radix;
  std::vector<std::vector<T>> twiddle_re, twiddle_im;
};

// The smallest length >= at_least whose prime factors are 2, 3 and 5 (an FFT size).
inline std::size_t smooth_size(std::size_t at_least) {
  std::size_t n = std::max<std::size_t>(at_least, 2);
  while (!is_smooth(n)) ++n;
  return n;
}

// The p-point DFT (p = 2, 3, 4 or 5) of (ar, ai) into (br, bi), forward sign.
template <std::size_t P, class V, class T>
inline void small_dft(const V* ar, const V* ai, V* br, V* bi) {
  if constexpr (P == 2) {
    br[0] = ar[0] + ar[1], bi[0] = ai[0] + ai[1], br[1] = ar[0] - ar[1], bi[1] = ai[0] - ai[1];
  } else if constexpr (P == 4) {
    const V s02r = ar[0] + ar[2], s02i = ai[0] + ai[2], d02r = ar[0] - ar[2], d02i = ai[0] - ai[2];
    const V s13r = ar[1] + ar[3], s13i = ai[1] + ai[3], d13r = ar[1] - ar[3], d13i = ai[1] - ai[3];
    br[0] = s02r + s13r, bi[0] = s02i + s13i, br[2] = s02r - s13r, bi[2] = s02i - s13i;
    br[1] = d02r + d13i, bi[1] = d02i - d13r, br[3] = d02r - d13i, bi[3] = d02i + d13r;
  } else if constexpr (P == 3) {
    const T c3 = static_cast<T>(-0.5), s3 = static_cast<T>(0.86602540378443864676);  // cos, sin of 2 pi / 3
    const V sr = ar[1] + ar[2], si = ai[1] + ai[2], dr = (ar[1] - ar[2]) * s3, di = (ai[1] - ai[2]) * s3;
    const V mr = ar[0] + sr * c3, mi = ai[0] + si * c3;
    br[0] = ar[0] + sr, bi[0] = ai[0] + si;
    br[1] = mr + di, bi[1] = mi - dr, br[2] = mr - di, bi[2] = mi + dr;
  } else {
    static_assert(P == 5, "radix 2, 3, 4 or 5");
    const T c51 = static_cast<T>(0.30901699437494742410), c52 = static_cast<T>(-0.80901699437494742410);
    const T s51 = static_cast<T>(0.95105651629515357212), s52 = static_cast<T>(0.58778525229247312917);
    const V s1r = ar[1] + ar[4], s1i = ai[1] + ai[4], d1r = ar[1] - ar[4], d1i = ai[1] - ai[4];
    const V s2r = ar[2] + ar[3], s2i = ai[2] + ai[3], d2r = ar[2] - ar[3], d2i = ai[2] - ai[3];
    const V m1r = ar[0] + s1r * c51 + s2r * c52, m1i = ai[0] + s1i * c51 + s2i * c52;
    const V m2r = ar[0] + s1r * c52 + s2r * c51, m2i = ai[0] + s1i * c52 + s2i * c51;
    const V e1r = d1r * s51 + d2r * s52, e1i = d1i * s51 + d2i * s52;  // times -i in X1, +i in X4
    const V e2r = d1r * s52 - d2r * s51, e2i = d1i * s52 - d2i * s51;  // times -i in X2, +i in X3
    br[0] = ar[0] + s1r + s2r, bi[0] = ai[0] + s1i + s2i;
    br[1] = m1r + e1i, bi[1] = m1i - e1r, br[4] = m1r - e1i, bi[4] = m1i + e1r;
    br[2] = m2r + e2i, bi[2] = m2i - e2r, br[3] = m2r - e2i, bi[3] = m2i + e2r;
  }
}

// One Stockham stage of radix P after stages of product `before` (see MixedFftPlan). With
// `scale` (the first stage only), the input's real and imaginary parts are multiplied lane-wise
// by scale[0] and scale[1] as they are read, saving a pass over the input.
// Before and Next, when not 0, fix `before` and n / (before P) at compile time, so that the
// loops unroll and the addresses fold (the stages of the usual segment length, 60).
template <std::size_t P, bool Scaled = false, std::size_t Before = 0, std::size_t Next = 0, class V, class T>
void mixed_stage(const V* xr, const V* xi, V* yr, V* yi, std::size_t n_runtime, std::size_t before_runtime,
                 const T* twr, const T* twi, const V* scale = nullptr) {
  const std::size_t before = Before ? Before : before_runtime;
  const std::size_t n = Before && Next ? Before * P * Next : n_runtime;
  const std::size_t next = Next ? Next : n / (before * P), stride = next * P, out_stride = n / P;
  for (std::size_t k = 0; k < before; ++k) {
    T wr[P], wi[P];
    for (std::size_t q = 1; q < P; ++q) wr[q] = twr[(q - 1) * before + k], wi[q] = twi[(q - 1) * before + k];
    for (std::size_t r = 0; r < next; ++r) {
      V ar[P], ai[P], br[P], bi[P];
      for (std::size_t q = 0; q < P; ++q) {
        const std::size_t at = r + next * q + stride * k;
        V vr = xr[at], vi = xi[at];
        if constexpr (Scaled) vr *= scale[0], vi *= scale[1];
        if (q == 0 || k == 0) {  // a twiddle of 1 (the whole first stage): loop-invariant, so unswitched
          ar[q] = vr, ai[q] = vi;
        } else {
          ar[q] = vr * wr[q] - vi * wi[q];
          ai[q] = vr * wi[q] + vi * wr[q];
        }
      }
      small_dft<P, V, T>(ar, ai, br, bi);
      for (std::size_t a = 0; a < P; ++a) {
        const std::size_t to = r + next * k + out_stride * a;
        yr[to] = br[a], yi[to] = bi[a];
      }
    }
  }
}

// One stage of any radix the plans use (2, 3, 4 or 5), chosen at run time.
template <bool Scaled, class V, class T>
void mixed_stage_of(std::size_t p, const V* xr, const V* xi, V* yr, V* yi, std::size_t n, std::size_t before,
                    const T* twr, const T* twi, const V* scale) {
  switch (p) {
    case 2: mixed_stage<2, Scaled>(xr, xi, yr, yi, n, before, twr, twi, scale); break;
    case 3: mixed_stage<3, Scaled>(xr, xi, yr, yi, n, before, twr, twi, scale); break;
    case 4: mixed_stage<4, Scaled>(xr, xi, yr, yi, n, before, twr, twi, scale); break;
    default: mixed_stage<5, Scaled>(xr, xi, yr, yi, n, before, twr, twi, scale);
  }
}

// Forward FFT of (re, im) using the scratch pair; returns the buffers holding the result.
// `scale` (two vectors, or none): the input's real and imaginary parts are first multiplied by
// them lane-wise.
template <class V, class T>
std::pair<V*, V*> mixed_fft(V* re, V* im, V* scratch_re, V* scratch_im, const MixedFftPlan<T>& plan,
                            const V* scale = nullptr) {
  V *xr = re, *xi = im, *yr = scratch_re, *yi = scratch_im;
  if (plan.n == 60) {  // the usual segment length: radices 4, 3, 5 with compile-time sizes
    const std::size_t n = plan.n;
    const auto& wr = plan.twiddle_re;
    const auto& wi = plan.twiddle_im;
    if (scale != nullptr)
      mixed_stage<4, true, 1, 15>(xr, xi, yr, yi, n, 1, wr[0].data(), wi[0].data(), scale);
    else
      mixed_stage<4, false, 1, 15>(xr, xi, yr, yi, n, 1, wr[0].data(), wi[0].data());
    mixed_stage<3, false, 4, 5>(yr, yi, xr, xi, n, 4, wr[1].data(), wi[1].data());
    mixed_stage<5, false, 12, 1>(xr, xi, yr, yi, n, 12, wr[2].data(), wi[2].data());
    return {yr, yi};
  }
  std::size_t before = 1;
  for (std::size_t stage = 0; stage < plan.radix.size(); ++stage) {
    const T *twr = plan.twiddle_re[stage].data(), *twi = plan.twiddle_im[stage].data();
    const std::size_t p = plan.radix[stage];
    if (stage == 0 && scale != nullptr)
      mixed_stage_of<true>(p, xr, xi, yr, yi, plan.n, before, twr, twi, scale);
    else
      mixed_stage_of<false>(p, xr, xi, yr, yi, plan.n, before, twr, twi, scale);
    std::swap(xr, yr);
    std::swap(xi, yi);
    before *= p;
  }
  return {xr, xi};
}

// Transposes a square block of vectors (rows[i][p] -> rows[p][i]) in registers: log2(lanes)
// rounds, each swapping the off-diagonal h x h sub-blocks of every 2h x 2h block with
// two-source shuffles (vpermt2 on AVX-512).
template <std::size_t H, class V>
inline void transpose_round(V* rows) {
  constexpr std::size_t lanes = sizeof(V) / sizeof(rows[0][0]);
  typedef typename std::conditional<sizeof(rows[0][0]) == 8, long long, int>::type Index;
  typedef Index Mask __attribute__((vector_size(sizeof(V))));
  Mask low, high;
  for (std::size_t p = 0; p < lanes; ++p) {
    low[p] = static_cast<Index>(p & H ? lanes + p - H : p);
    high[p] = static_cast<Index>(p & H ? lanes + p : p + H);
  }
  for (std::size_t i = 0; i < lanes; ++i)
    if (!(i & H)) {
      const V a = rows[i], b = rows[i + H];
      rows[i] = __builtin_shuffle(a, b, low);
      rows[i + H] = __builtin_shuffle(a, b, high);
    }
  if constexpr (H > 1) transpose_round<H / 2>(rows);
}

template <class V>
inline void transpose_lanes(V* rows) {
  transpose_round<sizeof(V) / sizeof(rows[0][0]) / 2>(rows);
}

// sum_t x[t]^2 of each lane over x[0, n), four chains of vector FMAs.
template <class V>
V lane_norms(const V* x, std::size_t n) {
  V s0{}, s1{}, s2{}, s3{};
  std::size_t t = 0;
  for (; t + 4 <= n; t += 4) s0 += x[t] * x[t], s1 += x[t + 1] * x[t + 1], s2 += x[t + 2] * x[t + 2], s3 += x[t + 3] * x[t + 3];
  for (; t < n; ++t) s0 += x[t] * x[t];
  return (s0 + s1) + (s2 + s3);
}

// Sum, minimum and maximum of x[0, n), kLanes at a time: a serial sum would wait on the
// latency of every add.
inline void sum_min_max(const double* x, std::size_t n, double& sum, double& lo, double& hi) {
  double_lanes vsum{}, vlo, vhi;
  for (std::size_t l = 0; l < kLanes; ++l) vlo[l] = std::numeric_limits<double>::infinity(), vhi[l] = -vlo[l];
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const double_lanes v = load_lanes(x + i);
    vsum += v;
    vlo = v < vlo ? v : vlo;
    vhi = v > vhi ? v : vhi;
  }
  sum = 0.0, lo = vlo[0], hi = vhi[0];
  for (std::size_t l = 0; l < kLanes; ++l) sum += vsum[l], lo = std::min(lo, vlo[l]), hi = std::max(hi, vhi[l]);
  for (; i < n; ++i) sum += x[i], lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
}

// d(j) = sum_i (u_i - u_{i+j})^2 for j in [from, to], straight from the definition.
inline void difference_direct(const double* u, std::size_t length, std::size_t from, std::size_t to, double* d) {
  for (std::size_t j = from; j <= to; ++j) d[j] = sq_diff_sum(u, u + j, length - j);
}

// CMND at each period from d(1..T) (d[0] unused): d(tau) / (mean_{j<=tau} d(j)); 1 where the
// denominator vanishes or is not a number (a constant or non-finite row has no periodicity).
inline void cmnd_from_difference(const double* d, std::size_t max_tau, const std::int64_t* periods,
                                 std::size_t n_periods, std::vector<double>& cum, double* out) {
  cum[0] = 0.0;
  for (std::size_t j = 1; j <= max_tau; ++j) cum[j] = cum[j - 1] + d[j];
  for (std::size_t p = 0; p < n_periods; ++p) {
    const auto t = static_cast<std::size_t>(periods[p]);
    out[p] = cum[t] > 0.0 ? d[t] * static_cast<double>(t) / cum[t] : 1.0;  // one division, not two
  }
}

// Cumulative mean normalised difference (OmniTransfer eq. 2, after YIN) of each row at each
// candidate period tau: d(t) = sum_i (u_i - u_{i+t})^2, CMND(tau) = d(tau) / mean_{j<=tau} d(j);
// 1 where the denominator vanishes or is NaN (a constant row, a row with a NaN); a row with an
// infinity gives NaN, as the plain loop does.
//
// Every d(j) comes from one autocorrelation, as YIN does: d(j) = sum_{i<L-j} u_i^2 +
// sum_{i>=j} u_i^2 - 2 acf(j), with acf by FFT (n the smallest 2-3-5 size >= L + max tau, so
// no lag wraps). Rows are centred (d does not change) and scaled by a power of two (CMND does
// not change) first, and two rows share one complex FFT (one in the real, one in the imaginary
// part), kLanes pairs per batch. The identity cancels: its error is about eps E log n (E the row's energy),
// so where mean_{j<=tau} d(j) < kCmndDirectBelow E the first such lags are summed directly.
constexpr double kCmndDirectBelow = 1e-2;

template <class T>
void cmnd(const T* x, double* out, std::size_t rows, std::size_t length,
          const std::int64_t* periods, std::size_t n_periods) {
  std::size_t max_tau = 0;
  for (std::size_t p = 0; p < n_periods; ++p) max_tau = std::max(max_tau, static_cast<std::size_t>(periods[p]));
  const std::size_t n = smooth_size(length + max_tau);
  const MixedFftPlan<double>& plan = cached_plan<MixedFftPlan<double>>(n);
  const double inverse_n = 1.0 / static_cast<double>(n);
  constexpr std::size_t kRows = 2 * kLanes;  // rows per batch: lane l holds rows l and kLanes + l
  const std::size_t batches = (rows + kRows - 1) / kRows;
  parallel_for(batches, [&](std::size_t b0, std::size_t b1) {
    std::vector<double_lanes> re(n), im(n), scratch_re(n), scratch_im(n);
    std::vector<double> u(kRows * length), zeros(length), d(max_tau + 1), cum(max_tau + 1);
    std::vector<double_lanes> first(2 * (max_tau + 1)), last(2 * (max_tau + 1)), d_lanes(max_tau + 1),
        cum_lanes(max_tau + 1);
    double_lanes energy[2];
    enum class Kind { fft, constant, direct };
    Kind kind[kRows];
    for (std::size_t b = b0; b < b1; ++b) {
      std::fill(re.begin() + length, re.end(), double_lanes{});  // the zero padding
      std::fill(im.begin() + length, im.end(), double_lanes{});
      const std::size_t r0 = b * kRows, in_batch = std::min(kRows, rows - r0);
      const double* source[kRows];  // each slot's centred, scaled row, or zeros
      for (std::size_t s = 0; s < kRows; ++s) {
        double* row = u.data() + s * length;
        source[s] = zeros.data();
        if (s >= in_batch) {
          kind[s] = Kind::constant;
          continue;
        }
        for (std::size_t i = 0; i < length; ++i) row[i] = static_cast<double>(x[(r0 + s) * length + i]);
        double sum, lo, hi;
        sum_min_max(row, length, sum, lo, hi);
        kind[s] = !std::isfinite(sum) || !std::isfinite(hi - lo) ? Kind::direct : hi == lo ? Kind::constant : Kind::fft;
        if (kind[s] != Kind::fft) continue;
        const double mean = sum / static_cast<double>(length);
        int exponent = 0;
        std::frexp(std::max(hi - mean, mean - lo), &exponent);
        if (exponent < std::numeric_limits<double>::min_exponent) {  // a subnormal spread: 2^-exponent overflows
          kind[s] = Kind::direct;
          continue;
        }
        const double scale = std::ldexp(1.0, -exponent);
        for (std::size_t i = 0; i < length; ++i) row[i] = (row[i] - mean) * scale;
        source[s] = row;
      }
      // Rows 0..7 into the lanes of re, 8..15 into those of im, by register transposes.
      for (std::size_t part = 0; part < 2; ++part) {
        double_lanes* dst = part ? im.data() : re.data();
        std::size_t t0 = 0;
        for (; t0 + kLanes <= length; t0 += kLanes) {
          double_lanes block[kLanes];
          for (std::size_t lane = 0; lane < kLanes; ++lane)
            block[lane] = load_lanes(source[part * kLanes + lane] + t0);
          transpose_lanes(block);
          for (std::size_t lane = 0; lane < kLanes; ++lane) dst[t0 + lane] = block[lane];
        }
        for (; t0 < length; ++t0)
          for (std::size_t lane = 0; lane < kLanes; ++lane) dst[t0][lane] = source[part * kLanes + lane][t0];
      }
      // Each lane's energy and its sums of u^2 over i < j and over i >= L - j, for every lag.
      for (std::size_t part = 0; part < 2; ++part) {
        const double_lanes* lanes_u = part ? im.data() : re.data();
        double_lanes* head = first.data() + part * (max_tau + 1);
        double_lanes* tail = last.data() + part * (max_tau + 1);
        energy[part] = lane_norms(lanes_u, length);
        head[0] = tail[0] = double_lanes{};
        for (std::size_t j = 1; j <= max_tau; ++j) {
          head[j] = head[j - 1] + lanes_u[j - 1] * lanes_u[j - 1];
          tail[j] = tail[j - 1] + lanes_u[length - j] * lanes_u[length - j];
        }
      }
      // Z = FFT(a + i b); W = |A_k|^2 + i |B_k|^2 from Z_k and Z_{n-k}; n IFFT(W) = n (acf(a) +
      // i acf(b)) is a forward FFT of W's swapped parts with its own parts swapped back.
      const auto [zr, zi] = mixed_fft(re.data(), im.data(), scratch_re.data(), scratch_im.data(), plan);
      for (std::size_t k = 0; k <= n / 2; ++k) {
        const std::size_t mk = (n - k) % n;
        const double_lanes ar = zr[k], ai = zi[k], br = zr[mk], bi = zi[mk];
        const double_lanes power = ar * ar + ai * ai + br * br + bi * bi, cross = 2.0 * (ar * br - ai * bi);
        zr[k] = zr[mk] = 0.25 * (power + cross);
        zi[k] = zi[mk] = 0.25 * (power - cross);
      }
      const bool in_first = zr == re.data();
      const auto [acf_b, acf_a] = mixed_fft(zi, zr, in_first ? scratch_re.data() : re.data(),
                                            in_first ? scratch_im.data() : im.data(), plan);
      // d, its running sum and CMND for the kLanes rows of each part at once.
      double_lanes needs_direct[2];  // per lane, the last lag to sum directly (0: none)
      const double_lanes zero{};
      for (std::size_t part = 0; part < 2; ++part) {
        const double_lanes* acf = part ? acf_b : acf_a;
        const double_lanes* head = first.data() + part * (max_tau + 1);
        const double_lanes* tail = last.data() + part * (max_tau + 1);
        double_lanes running{}, direct_to{};
        for (std::size_t j = 1; j <= max_tau; ++j) {
          const double_lanes dj = 2.0 * (energy[part] - acf[j] * inverse_n) - head[j] - tail[j];
          d_lanes[j] = dj > zero ? dj : zero;
          running += d_lanes[j];
          cum_lanes[j] = running;
          const double lag = static_cast<double>(j);
          direct_to = running < kCmndDirectBelow * lag * energy[part] ? zero + lag : direct_to;
        }
        needs_direct[part] = direct_to;
        for (std::size_t p = 0; p < n_periods; ++p) {
          const auto t = static_cast<std::size_t>(periods[p]);
          const double_lanes one = zero + 1.0;
          const double_lanes value = cum_lanes[t] > zero ? d_lanes[t] * static_cast<double>(t) / cum_lanes[t] : one;
          for (std::size_t lane = 0; lane < kLanes && part * kLanes + lane < in_batch; ++lane)
            out[(r0 + part * kLanes + lane) * n_periods + p] = value[lane];
        }
        // Rows the lanes did not finish: constant, non-finite, or with lags to sum directly.
        for (std::size_t lane = 0; lane < kLanes && part * kLanes + lane < in_batch; ++lane) {
          const std::size_t s = part * kLanes + lane;
          double* dst = out + (r0 + s) * n_periods;
          const double* row = u.data() + s * length;
          if (kind[s] == Kind::constant) {
            std::fill(dst, dst + n_periods, 1.0);
          } else if (kind[s] == Kind::direct) {
            difference_direct(row, length, 1, max_tau, d.data());
            cmnd_from_difference(d.data(), max_tau, periods, n_periods, cum, dst);
          } else if (needs_direct[part][lane] > 0.0) {
            const auto direct_to_lane = static_cast<std::size_t>(needs_direct[part][lane]);
            for (std::size_t j = 1; j <= max_tau; ++j) d[j] = d_lanes[j][lane];
            difference_direct(row, length, 1, direct_to_lane, d.data());
            cmnd_from_difference(d.data(), max_tau, periods, n_periods, cum, dst);
          }
        }
      }
    }
  }, 1);
}

// C (m x n) = A (m x k) * B (k x n), all row-major, computed in Acc (float or double). A small
// packed GEMM: B is packed once into column panels one vector wide (NR of Acc); each thread packs
// blocks of kGemmBlockRows rows of A and sweeps every B panel over all tiles of the block
// while the panel is in cache, so B, large when n is, is read once per block, not once per
// MR rows. The MR x NR micro-kernel keeps its MR accumulators in vector registers: 16 where
// the target has 32 of them (AVX-512), else 8 (16 registers: AVX2, SSE, NEON's 32 included).
// pack_a(i0, rows, apack) writes rows i0..i0+rows of A as apack[kk * MR + r] (zero-padded
// to MR rows), which lets a caller transform A on the fly instead of materialising it;
// store(i, j, c) receives each element of C once.
constexpr std::size_t kGemmRows = kVectorBytes == 64 ? 16 : 8;
constexpr std::size_t kGemmBlockRows = 128;  // rows of A per block: a multiple of kGemmRows

template <class Acc, class TB, class PackA, class Store>
void gemm_packed(PackA pack_a, const TB* b, std::size_t m, std::size_t k, std::size_t n, Store store) {
  // A typedef: GCC drops the attribute from an alias-declaration of a dependent type.
  typedef Acc vec __attribute__((vector_size(kVectorBytes)));
  static_assert(sizeof(vec) == kVectorBytes, "the accumulators must be vector registers");
  constexpr std::size_t MR = kGemmRows, NR = kVectorBytes / sizeof(Acc), MC = kGemmBlockRows;
  const std::size_t panels = (n + NR - 1) / NR;
  std::vector<Acc> bpack(panels * k * NR, Acc{0});
  for (std::size_t p = 0; p < panels; ++p)
    for (std::size_t kk = 0; kk < k; ++kk)
      for (std::size_t q = 0; q < NR && p * NR + q < n; ++q)
        bpack[(p * k + kk) * NR + q] = static_cast<Acc>(b[kk * n + p * NR + q]);
  const std::size_t blocks = (m + MC - 1) / MC;
  parallel_for(blocks, [&](std::size_t b0, std::size_t b1) {
    std::vector<Acc> apack(MC * k);
    for (std::size_t blk = b0; blk < b1; ++blk) {
      const std::size_t i0 = blk * MC, rows = std::min(MC, m - i0), tiles = (rows + MR - 1) / MR;
      for (std::size_t t = 0; t < tiles; ++t)
        pack_a(i0 + t * MR, std::min(MR, rows - t * MR), apack.data() + t * k * MR);
      for (std::size_t p = 0; p < panels; ++p) {
        const Acc* bp = bpack.data() + p * k * NR;
        for (std::size_t t = 0; t < tiles; ++t) {
          vec acc[MR] = {};  // GCC vector types, so that the accumulators live in registers
          const Acc* ap = apack.data() + t * k * MR;
          for (std::size_t kk = 0; kk < k; ++kk) {
            const vec brow = load_lanes(bp + kk * NR);
            const Acc* arow = ap + kk * MR;
            for (std::size_t r = 0; r < MR; ++r) acc[r] += arow[r] * brow;
          }
          Acc c[MR][NR];
          std::memcpy(c, acc, sizeof(c));
          const std::size_t r_end = std::min(MR, rows - t * MR), q_end = std::min(NR, n - p * NR);
          for (std::size_t r = 0; r < r_end; ++r)
            for (std::size_t q = 0; q < q_end; ++q) store(i0 + t * MR + r, p * NR + q, c[r][q]);
        }
      }
    }
  }, 1);
}

// Weighted NCC by FFT (for lengths whose prime factors are 2, 3 and 5): with R_j the DFT of
// r_j = w_j ref_j / |ref_j| and U_j that of the unit segment row u_j, the correlation over all
// circular shifts is ncc = IDFT(sum_j R_j conj(U_j)), O(m n log n) per segment instead of the
// circulant GEMM's m n^2. Segments sit in the lanes (kLanes of T per vector); the real rows j
// and j + 1 share one complex FFT (u_j + i u_{j+1}), untangled from Z_k and Z_{n-k}; the
// inverse is a forward FFT of conj(S) whose real part is n ncc. Calls store as weighted_ncc_each.
template <class T, class Store>
bool weighted_ncc_fft(const T* ref, const T* segments, const T* w, std::size_t count, std::size_t m,
                      std::size_t n, Store store) {
  if (n < 8 || !is_smooth(n)) return false;
  const MixedFftPlan<T>& plan = cached_plan<MixedFftPlan<T>>(n);
  typedef typename lanes_of<T>::type V;
  static_assert(sizeof(V) == kVectorBytes, "segments must sit in the lanes of one vector");
  constexpr std::size_t lanes = kVectorBytes / sizeof(T);
  const std::size_t half = n / 2 + 1;
  // R_j[k] / 2 (the untangling's halves folded in), k < half, by the same FFT: `lanes`
  // reference rows at a time in the real parts (imaginary parts zero, so nothing to untangle).
  std::vector<T> rr((m + 1) * half, T{0}), ri((m + 1) * half, T{0});  // row m stays 0 (odd m's partner)
  {
    std::vector<V> fr(n), fi(n), gr(n), gi(n);
    for (std::size_t j0 = 0; j0 < m; j0 += lanes) {
      std::fill(fr.begin(), fr.end(), V{});
      std::fill(fi.begin(), fi.end(), V{});
      for (std::size_t lane = 0; lane < lanes && j0 + lane < m; ++lane)
        for (std::size_t t = 0; t < n; ++t) fr[t][lane] = ref[(j0 + lane) * n + t];
      const auto [zr, zi] = mixed_fft(fr.data(), fi.data(), gr.data(), gi.data(), plan);
      for (std::size_t lane = 0; lane < lanes && j0 + lane < m; ++lane) {
        const std::size_t j = j0 + lane;
        const double norm = std::sqrt(dot(ref + j * n, ref + j * n, n));
        if (!usable_norm(norm)) continue;
        const double f = 0.5 * static_cast<double>(w[j]) / norm;
        for (std::size_t k = 0; k < half; ++k) {
          rr[j * half + k] = static_cast<T>(f * zr[k][lane]);
          ri[j * half + k] = static_cast<T>(f * zi[k][lane]);
        }
      }
    }
  }
  const std::size_t batches = (count + lanes - 1) / lanes;
  parallel_for(batches, [&](std::size_t b0, std::size_t b1) {
    std::vector<V> xr(n), xi(n), yr(n), yi(n), sr(half), si(half);
    for (std::size_t b = b0; b < b1; ++b) {
      const std::size_t c0 = b * lanes, in_batch = std::min(lanes, count - c0);
      std::fill(sr.begin(), sr.end(), V{});
      std::fill(si.begin(), si.end(), V{});
      for (std::size_t j = 0; j < m; j += 2) {
        // Rows j (real part) and j + 1 (imaginary part) of every segment of the batch into the
        // lanes, then scaled to unit norm lane-wise: the two rows of a complex FFT must be of one
        // scale (the rounding of a large row would swamp a small partner when untangled), and a
        // row without a finite positive norm is zeroed (a NaN would spread to its partner).
        T* lr = reinterpret_cast<T*>(xr.data());
        T* li = reinterpret_cast<T*>(xi.data());
        for (std::size_t part = 0; part < 2; ++part) {
          const bool full = in_batch == lanes && j + part < m;
          std::size_t t0 = 0;
          if (full)  // blocks of lanes x lanes values transposed in registers
            for (; t0 + lanes <= n; t0 += lanes) {
              V block[lanes];
              for (std::size_t lane = 0; lane < lanes; ++lane)
                block[lane] = load_lanes(segments + ((c0 + lane) * m + j + part) * n + t0);
              transpose_lanes(block);
              V* to = (part ? xi : xr).data() + t0;
              for (std::size_t lane = 0; lane < lanes; ++lane) to[lane] = block[lane];
            }
          for (std::size_t lane = 0; lane < lanes; ++lane) {
            T* dst = (part ? li : lr) + lane;
            if (lane < in_batch && j + part < m) {
              const T* row = segments + ((c0 + lane) * m + j + part) * n;
              if (j + 2 + part < m)  // the next step's row, while this one is transformed
                for (std::size_t t = 0; t < n; t += 64 / sizeof(T)) __builtin_prefetch(row + 2 * n + t);
              for (std::size_t t = t0; t < n; ++t) dst[t * lanes] = row[t];
            } else {
              for (std::size_t t = 0; t < n; ++t) dst[t * lanes] = T{0};
            }
          }
        }
        V scale[2] = {lane_norms(xr.data(), n), lane_norms(xi.data(), n)};  // squared norms first
        const auto normal = [](T squared) {  // 1 / sqrt is exact enough in T
          return squared >= std::numeric_limits<T>::min() && squared <= std::numeric_limits<T>::max();
        };
        for (std::size_t part = 0; part < 2; ++part) {
          V& squared = scale[part];
          bool all_normal = true;  // the usual case: 1 / sqrt of every lane at once
          for (std::size_t lane = 0; lane < lanes; ++lane) all_normal &= normal(squared[lane]);
          if (all_normal) {
            for (std::size_t lane = 0; lane < lanes; ++lane) squared[lane] = T{1} / std::sqrt(squared[lane]);
            continue;
          }
          for (std::size_t lane = 0; lane < lanes; ++lane) {
            T* data = (part ? li : lr) + lane;
            if (normal(squared[lane])) {
              squared[lane] = T{1} / std::sqrt(squared[lane]);
              continue;
            }
            // Zero, under- or overflowed in T, or not finite: the norm again in double, and a usable
            // row scaled to unit norm here.
            const T* row = lane < in_batch && j + part < m ? segments + ((c0 + lane) * m + j + part) * n : nullptr;
            const double norm = row ? std::sqrt(dot(row, row, n)) : 0.0;
            const bool usable = usable_norm(norm);
            for (std::size_t t = 0; t < n; ++t) data[t * lanes] = usable ? static_cast<T>(row[t] / norm) : T{0};
            squared[lane] = usable ? T{1} : T{0};
          }
        }
        const auto [zr, zi] = mixed_fft(xr.data(), xi.data(), yr.data(), yi.data(), plan, scale);
        const T* r0r = rr.data() + j * half;
        const T* r0i = ri.data() + j * half;
        const T* r1r = rr.data() + (j + 1) * half;
        const T* r1i = ri.data() + (j + 1) * half;
        for (std::size_t k = 0; k < half; ++k) {
          const std::size_t mk = k == 0 ? 0 : n - k;  // (n - k) mod n, without a division
          const V a = zr[k], bb = zi[k], c = zr[mk], d = zi[mk];
          const V ar = a + c, ai = d - bb;  // 2 conj(U_j[k])
          const V br = bb + d, bi = a - c;  // 2 conj(U_{j+1}[k])
          const T w0r = r0r[k], w0i = r0i[k], w1r = r1r[k], w1i = r1i[k];  // read once: stores to sr may alias
          sr[k] += ar * w0r - ai * w0i + br * w1r - bi * w1i;
          si[k] += ar * w0i + ai * w0r + br * w1i + bi * w1r;
        }
      }
      for (std::size_t k = 0; k < n; ++k) {  // conj(S) over all k, S Hermitian
        const bool low = k < half;
        xr[k] = low ? sr[k] : sr[n - k];
        xi[k] = low ? -si[k] : si[n - k];
      }
      const V* nr = mixed_fft(xr.data(), xi.data(), yr.data(), yi.data(), plan).first;  // real part: n ncc
      const T scale = static_cast<T>(1.0 / static_cast<double>(n));
      for (std::size_t lane = 0; lane < in_batch; ++lane)
        for (std::size_t shift = 0; shift < n; ++shift) store(c0 + lane, shift, nr[shift][lane] * scale);
    }
  }, 1);
  return true;
}

// Weighted NCC (OmniTransfer eq. 6) between a reference ref (m x n) and each of the
// segments (count x m x n) at every circular shift s in [0, n): the segment is rolled right
// by s (numpy.roll(seg, s, axis=-1)). Rows without a finite positive norm (zero, or holding a
// NaN or an infinity) contribute 0. store(c, s, v)
// receives each value once, the shifts of one segment in increasing order and on one thread.
template <class T, class Store>
void weighted_ncc_each(const T* ref, const T* segments, const T* w, std::size_t count, std::size_t m,
                       std::size_t n, Store store) {
  if (weighted_ncc_fft(ref, segments, w, count, m, n, store)) return;
  // Other lengths. With u_j the unit-norm segment rows and r_j = w_j ref_j / |ref_j|:
  //   ncc[s] = sum_j sum_i r_j[i] u_j[(i - s) mod n] = sum_j sum_q u_j[q] r_j[(q + s) mod n],
  // so all segments at once are one GEMM, U (count x m n) times the stacked circulant
  // R (m n x n) with R[j n + q][s] = r_j[(q + s) mod n].
  std::vector<double> circulant(m * n * n);
  for (std::size_t j = 0; j < m; ++j) {
    const double norm = std::sqrt(dot(ref + j * n, ref + j * n, n));
    if (!usable_norm(norm)) continue;
    const double f = static_cast<double>(w[j]) / norm;
    for (std::size_t q = 0; q < n; ++q)
      for (std::size_t s = 0; s < n; ++s) circulant[(j * n + q) * n + s] = f * ref[j * n + (q + s) % n];
  }
  // Segments are scaled to unit-norm rows while being packed, never materialised. The GEMM
  // runs in the input's precision (float32: twice the lanes, and an error far below float32
  // tolerance for m n terms of unit rows); norms and the circulant are computed in double.
  auto pack_units = [&](std::size_t i0, std::size_t rows, T* apack) {
    for (std::size_t r = 0; r < kGemmRows; ++r)
      for (std::size_t j = 0; j < m; ++j) {
        const T* row = r < rows ? segments + ((i0 + r) * m + j) * n : nullptr;
        const double norm = row ? std::sqrt(dot(row, row, n)) : 0.0;
        const double inv = usable_norm(norm) ? 1.0 / norm : 0.0;
        for (std::size_t i = 0; i < n; ++i)
          apack[(j * n + i) * kGemmRows + r] = static_cast<T>(inv > 0.0 ? row[i] * inv : 0.0);
      }
  };
  gemm_packed<T>(pack_units, circulant.data(), count, m * n, n, store);
}

// The weighted NCC of every segment at every shift into out (count x n).
template <class T>
void weighted_ncc(const T* ref, const T* segments, const T* w, T* out, std::size_t count,
                  std::size_t m, std::size_t n) {
  weighted_ncc_each(ref, segments, w, count, m, n, [&](std::size_t c, std::size_t s, T v) { out[c * n + s] = v; });
}

// The shift in [0, n) maximising the weighted NCC of each segment (OmniTransfer eq. 7; the
// first on ties) and that NCC, keeping a running maximum instead of the count x n values.
template <class T>
void best_shift(const T* ref, const T* segments, const T* w, std::int64_t* shift, T* value,
                std::size_t count, std::size_t m, std::size_t n) {
  weighted_ncc_each(ref, segments, w, count, m, n, [&](std::size_t c, std::size_t s, T v) {
    if (s == 0 || v > value[c]) {
      shift[c] = static_cast<std::int64_t>(s);
      value[c] = v;
    }
  });
}

// Rolls every row of each segment (count x m x n) right by its shift.
template <class T>
void align(const T* segments, const std::int64_t* shift, T* out, std::size_t count,
           std::size_t m, std::size_t n) {
  parallel_for(count, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t c = c0; c < c1; ++c) {
      const auto nn = static_cast<std::int64_t>(n);
      const std::size_t s = static_cast<std::size_t>(((shift[c] % nn) + nn) % nn);
      for (std::size_t j = 0; j < m; ++j) {
        const T* src = segments + (c * m + j) * n;
        T* dst = out + (c * m + j) * n;
        std::copy(src, src + (n - s), dst + s);
        std::copy(src + (n - s), src + n, dst);
      }
    }
  }, 64);
}

}  // namespace OMNISTREAM_TARGET
}  // namespace omnistream
