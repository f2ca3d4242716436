// C++ tests of csrc/kernels.hpp against small hand-checked cases and plain loops, built once
// per kernel target (CMakeLists.txt); a target this CPU cannot run is registered as
// <target>.skipped instead (print_cpu_targets.cpp tells CMake which).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels.hpp"

using omnistream::align;
using omnistream::baseline;
using omnistream::best_shift;
using omnistream::cmnd;
using omnistream::weighted_ncc;

TEST(Baseline, DropsTheExtremeAndInterpolates) {
  // 20 points, drop 5% = 1 point: the spike at index 7 is replaced by interpolation.
  std::vector<double> x(20, 1.0), out(20);
  for (int i = 0; i < 20; ++i) x[i] = i;
  x[7] = 1000.0;
  baseline(x.data(), out.data(), 1, 20, 1, 0.05);
  for (int i = 0; i < 20; ++i) EXPECT_DOUBLE_EQ(out[i], i);
}

TEST(Baseline, MovingAverageAndMissingValues) {
  std::vector<float> x = {1, NAN, 3, 5}, out(4);
  baseline(x.data(), out.data(), 1, 4, 2, 0.0);
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], 1.5f);  // (1 + 2) / 2, NaN filled by 2
  EXPECT_FLOAT_EQ(out[2], 2.5f);
  EXPECT_FLOAT_EQ(out[3], 4.0f);
}

TEST(Cmnd, PeriodicSeriesHasLowValueAtItsPeriod) {
  const int n = 400, period = 20;
  std::vector<double> x(n);
  for (int i = 0; i < n; ++i) x[i] = std::sin(2 * M_PI * i / period);
  std::vector<std::int64_t> periods = {period, period / 2};
  std::vector<double> out(2);
  cmnd(x.data(), out.data(), 1, n, periods.data(), 2);
  EXPECT_LT(out[0], 1e-6);
  EXPECT_GT(out[1], 1.0);
}

TEST(WeightedNcc, FindsAndUndoesAShift) {
  const std::size_t m = 3, n = 16;
  std::vector<double> ref(m * n), seg(m * n), w = {1.0, 2.0, 0.5};
  for (std::size_t j = 0; j < m; ++j)
    for (std::size_t i = 0; i < n; ++i) ref[j * n + i] = std::sin(0.3 * (j + 1) * i) + 0.1 * j + (i == 3);
  const std::size_t true_shift = 5;  // seg = roll(ref, -5), so rolling it by 5 restores ref
  for (std::size_t j = 0; j < m; ++j)
    for (std::size_t i = 0; i < n; ++i) seg[j * n + i] = ref[j * n + (i + true_shift) % n];
  std::vector<double> ncc(n), value(1), aligned(m * n);
  std::vector<std::int64_t> shift(1);
  weighted_ncc(ref.data(), seg.data(), w.data(), ncc.data(), 1, m, n);
  best_shift(ref.data(), seg.data(), w.data(), shift.data(), value.data(), 1, m, n);
  EXPECT_EQ(value[0], *std::max_element(ncc.begin(), ncc.end()));
  EXPECT_EQ(shift[0], static_cast<std::int64_t>(true_shift));
  EXPECT_NEAR(value[0], 3.5, 1e-12);  // sum of weights at perfect alignment
  align(seg.data(), shift.data(), aligned.data(), 1, m, n);
  for (std::size_t i = 0; i < m * n; ++i) EXPECT_DOUBLE_EQ(aligned[i], ref[i]);
}

// The mixed-radix FFT on lanes against a direct DFT, for lengths of every radix mix it serves.
TEST(MixedFft, MatchesTheDirectDft) {
  for (std::size_t n : {2u, 3u, 5u, 8u, 12u, 45u, 60u, 64u, 2304u}) {
    ASSERT_TRUE(omnistream::is_smooth(n)) << n;
    const omnistream::MixedFftPlan<double> plan(n);
    std::vector<omnistream::double_lanes> re(n), im(n), scratch_re(n), scratch_im(n);
    std::mt19937 rng(static_cast<unsigned>(n));
    std::normal_distribution<double> normal;
    std::vector<double> xr(n * omnistream::kLanes), xi(n * omnistream::kLanes);
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t l = 0; l < omnistream::kLanes; ++l) {
        re[t][l] = xr[l * n + t] = normal(rng);
        im[t][l] = xi[l * n + t] = normal(rng);
      }
    const auto [fr, fi] = omnistream::mixed_fft(re.data(), im.data(), scratch_re.data(), scratch_im.data(), plan);
    for (std::size_t l = 0; l < omnistream::kLanes; ++l)
      for (std::size_t k = 0; k < n; k += std::max<std::size_t>(1, n / 50)) {
        double want_re = 0.0, want_im = 0.0;
        for (std::size_t t = 0; t < n; ++t) {
          const double angle = -2.0 * M_PI * static_cast<double>((k * t) % n) / static_cast<double>(n);
          want_re += xr[l * n + t] * std::cos(angle) - xi[l * n + t] * std::sin(angle);
          want_im += xr[l * n + t] * std::sin(angle) + xi[l * n + t] * std::cos(angle);
        }
        EXPECT_NEAR(fr[k][l], want_re, 1e-9 * std::sqrt(static_cast<double>(n))) << n << " " << k;
        EXPECT_NEAR(fi[k][l], want_im, 1e-9 * std::sqrt(static_cast<double>(n))) << n << " " << k;
      }
  }
  EXPECT_FALSE(omnistream::is_smooth(49));
  EXPECT_THROW(omnistream::MixedFftPlan<double>(49), std::invalid_argument);
  EXPECT_EQ(omnistream::smooth_size(2288), 2304u);
  EXPECT_EQ(omnistream::smooth_size(60), 60u);
}

TEST(TransposeLanes, SwapsRowsAndLanes) {
  omnistream::double_lanes d[omnistream::kLanes];
  for (std::size_t i = 0; i < omnistream::kLanes; ++i)
    for (std::size_t p = 0; p < omnistream::kLanes; ++p) d[i][p] = static_cast<double>(10 * i + p);
  omnistream::transpose_lanes(d);
  for (std::size_t i = 0; i < omnistream::kLanes; ++i)
    for (std::size_t p = 0; p < omnistream::kLanes; ++p) EXPECT_EQ(d[i][p], static_cast<double>(10 * p + i));
  constexpr std::size_t kFloats = sizeof(omnistream::float_lanes) / sizeof(float);
  omnistream::float_lanes f[kFloats];
  for (std::size_t i = 0; i < kFloats; ++i)
    for (std::size_t p = 0; p < kFloats; ++p) f[i][p] = static_cast<float>(100 * i + p);
  omnistream::transpose_lanes(f);
  for (std::size_t i = 0; i < kFloats; ++i)
    for (std::size_t p = 0; p < kFloats; ++p) EXPECT_EQ(f[i][p], static_cast<float>(100 * p + i));
}

TEST(NthLargest, SampledGuessOrFullSelection) {
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  for (std::size_t m : {10u, 1000u, 9000u})
    for (std::size_t n : {1u, 7u, 450u}) {
      if (n > m) continue;
      std::vector<double> v(m), scratch(m);
      for (auto& x : v) x = normal(rng);
      if (m == 9000) for (std::size_t i = 0; i < m; i += 16) v[i] = 100.0 + i;  // the sample all high: the guess fails
      std::vector<double> sorted = v;
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      EXPECT_EQ(omnistream::nth_largest(v.data(), m, n, scratch.data()), sorted[n - 1]) << m << " " << n;
    }
}

TEST(WeightedNcc, FftAndGemmPathsAgree) {
  // 60 points take the FFT, 49 the circulant GEMM: both against a plain loop over shifts.
  for (std::size_t n : {60u, 49u}) {
    const std::size_t m = 3, count = 11;
    std::mt19937 rng(static_cast<unsigned>(n));
    std::normal_distribution<double> normal;
    std::vector<double> ref(m * n), seg(count * m * n), w = {1.0, 0.5, 2.0}, ncc(count * n);
    for (auto& x : ref) x = normal(rng);
    for (auto& x : seg) x = normal(rng);
    weighted_ncc(ref.data(), seg.data(), w.data(), ncc.data(), count, m, n);
    for (std::size_t c = 0; c < count; ++c)
      for (std::size_t s = 0; s < n; ++s) {
        double want = 0.0;
        for (std::size_t j = 0; j < m; ++j) {
          const double* r = ref.data() + j * n;
          const double* u = seg.data() + (c * m + j) * n;
          double dot_rs = 0.0, rr = 0.0, uu = 0.0;
          for (std::size_t i = 0; i < n; ++i) dot_rs += r[i] * u[(i + n - s) % n], rr += r[i] * r[i], uu += u[i] * u[i];
          want += w[j] * dot_rs / std::sqrt(rr * uu);
        }
        EXPECT_NEAR(ncc[c * n + s], want, 1e-12) << n << " " << c << " " << s;
      }
  }
}
