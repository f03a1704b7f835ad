// ProcessThreads: how many threads this process has now, for tests that
// check a thread count does not grow with a worker count.
#ifndef SLUICE_TESTS_SUPPORT_PROCESS_THREADS_HPP_
#define SLUICE_TESTS_SUPPORT_PROCESS_THREADS_HPP_

#include <filesystem>
#include <system_error>

namespace sluice::test_support {

// The entries of /proc/self/task; -1 if it cannot be read.
inline int ProcessThreads() {
  std::error_code ec;
  int n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/task", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return ec ? -1 : n;
}

}  // namespace sluice::test_support

#endif  // SLUICE_TESTS_SUPPORT_PROCESS_THREADS_HPP_
