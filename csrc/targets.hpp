// Which kernel targets this CPU runs (and its operating system: libgcc's checks include the
// AVX register state), best first; the last is the portable baseline. Each target needs every
// instruction its copy of the kernels is compiled with: the flag lists in CMakeLists.txt.
#pragma once

#include <string>
#include <vector>

namespace omnistream {

inline std::vector<std::string> cpu_targets() {
  std::vector<std::string> runs;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool sse4 = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
  const bool avx2 = sse4 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  if (avx512) runs.push_back("avx512");
  if (avx2) runs.push_back("avx2");
  if (sse4) runs.push_back("sse4");
  runs.push_back("sse2");
#elif defined(__ARM_NEON)
  runs.push_back("neon");
#else
  runs.push_back("generic");
#endif
  return runs;
}

}  // namespace omnistream
