// Prints the kernel targets this CPU runs (csrc/targets.hpp), one per line: CMake runs it when
// configuring the tests, to register only the test executables this machine can execute.
#include <cstdio>

#include "targets.hpp"

int main() {
  for (const auto& target : omnistream::cpu_targets()) std::printf("%s\n", target.c_str());
  return 0;
}
