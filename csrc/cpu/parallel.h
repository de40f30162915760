// A small persistent thread pool for the CPU kernels.
//
// Why not std::thread per call or OpenMP: a decode step calls a kernel every few
// milliseconds, and starting threads costs tens of microseconds per call; OpenMP would add a
// second OpenMP runtime next to torch's. Workers here are started once, spin for a bounded
// 200 us after each job (so back-to-back kernel calls skip the ~40 us wake-up), then sleep on a
// condition variable; the calling thread does a share of the work itself.
#pragma once
#include <cstdint>
#include <functional>

namespace pydecode::cpu {

// Threads used by the kernels: PYDECODE_NUM_THREADS if set (>= 1), else the hardware count.
int num_threads();

// Runs fn(task) for every task in [0, n_tasks), spread over the pool; blocks until all are done
// and rethrows the first exception a task threw. Nested calls (from inside a task) and calls
// with n_tasks <= 1 run inline on the calling thread.
void parallel_tasks(int64_t n_tasks, const std::function<void(int64_t)>& fn);

// Splits [0, n) into at most 4 * num_threads() contiguous chunks of at least `grain` items and
// runs fn(begin, end) on each, in any order on any thread (inline when n <= grain).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace pydecode::cpu
