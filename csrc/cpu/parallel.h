// The CPU kernels' threads: torch's own OpenMP team when torch's GNU libgomp is loaded, else a
// small persistent pool.
//
// A decode step calls a kernel right after the model's last op, when torch's OpenMP worker is
// still spinning on the other core waiting for its next region; a thread of our own then shares
// a core with it (beam top-k at 32 x 32000 took 0.7-1.3 ms after a linear layer against 0.55 ms
// alone). Running the tasks through libgomp's GOMP_parallel (found with dlopen(RTLD_NOLOAD): no
// second OpenMP runtime, nothing linked) hands them to that spinning worker: 0.69-0.71 ms.
// PYDECODE_PARALLEL=pool selects the pool, as do a forked child (libgomp's team does not survive
// fork()) and a torch without libgomp. The pool's workers are started once, spin for a bounded
// 200 us after each job (so back-to-back kernel calls skip the ~40 us wake-up), then sleep on a
// condition variable; the calling thread does a share of the work itself, and waits only for
// tasks a worker claimed (a GOMP region waits for every team thread, so on a machine whose cores
// are taken by other processes the pool degrades less).
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
