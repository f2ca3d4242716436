// C++ tests of csrc/kernels.hpp against small hand-checked cases and plain loops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
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
