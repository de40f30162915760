#include "parallel.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace pydecode::cpu {
namespace {

thread_local bool tl_inside_task = false;

// One parallel call. Workers hold it by shared_ptr, so a worker that wakes late for a finished
// job only finds its task counter exhausted, never the next job's tasks.
struct Job {
  const std::function<void(int64_t)>* fn;
  int64_t n_tasks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> pending{0};
  std::exception_ptr error;  // guarded by Pool::mutex_
};

// How long a thread spins on an atomic before it sleeps on a condition variable. A sleeping
// worker takes ~40 us to wake on the 2-vCPU VM (futex wake-up plus the hypervisor rescheduling
// the vCPU), which ate the gain of splitting a batch-1 row (a 128K-entry pass is ~100 us); a
// worker that spins a little after its last job is taken within ~1 us by the next call of a
// decode step (penalties, then the sampler, back to back). Bounded: an idle process goes back to
// sleeping after this long, it never busy-waits between steps that are milliseconds apart.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() or kSpin has passed; true when done() became true.
template <class Done>
bool spin_until(const Done& done) {
  const auto stop = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    cpu_relax();
    // The clock is read every 64 pauses (~2-5 us), not on every iteration.
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= stop) return done();
  }
}

class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
    std::lock_guard<std::mutex> submit(submit_mutex_);  // one job at a time
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->n_tasks = n_tasks;
    job->pending.store(n_tasks);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      generation_.fetch_add(1, std::memory_order_release);  // spinning workers see this without the lock
    }
    wake_.notify_all();  // cheap when nobody sleeps (no futex call)
    work(*job);
    if (!spin_until([&] { return job->pending.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return job->pending.load(std::memory_order_acquire) == 0; });
    }
    std::lock_guard<std::mutex> lock(mutex_);  // the job's error is written under it
    job_.reset();
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] {
        return stopping_.load(std::memory_order_relaxed) || generation_.load(std::memory_order_acquire) != seen;
      });
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_.load() || generation_.load() != seen; });
        if (stopping_.load()) return;
        seen = generation_.load();
        job = job_;
      }
      if (job) work(*job);
    }
  }

  // Takes tasks until none is left; the thread finishing the last one wakes the caller.
  void work(Job& job) {
    tl_inside_task = true;
    int64_t finished = 0;
    std::exception_ptr error;
    for (int64_t task = job.next.fetch_add(1); task < job.n_tasks; task = job.next.fetch_add(1)) {
      try {
        (*job.fn)(task);
      } catch (...) {
        if (!error) error = std::current_exception();
      }
      ++finished;
    }
    tl_inside_task = false;
    if (finished == 0) return;
    if (error) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!job.error) job.error = error;
    }
    if (job.pending.fetch_sub(finished, std::memory_order_acq_rel) == finished) {
      // The last task: the caller may be asleep on done_. Taking the mutex orders this notify
      // after its predicate check, so the wake-up cannot be lost.
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::shared_ptr<Job> job_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
};

std::mutex g_pool_mutex;
std::unique_ptr<Pool> g_pool;
pid_t g_pool_pid = 0;

Pool& pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  // A forked child has the pool object but not its threads: start a new one there.
  if (!g_pool || g_pool_pid != getpid()) {
    if (g_pool && g_pool_pid != getpid()) (void)g_pool.release();  // its threads do not exist here
    g_pool = std::make_unique<Pool>(num_threads());
    g_pool_pid = getpid();
  }
  return *g_pool;
}

// ------------------------------------------------------------------ torch's OpenMP team
// Right after a torch op (the model's lm_head), torch's OpenMP worker spins for ~0.5 ms waiting
// for its next parallel region. A thread of the pool above then has to share a core with it
// (on the 2-vCPU VM the whole spin), so a kernel called between two model steps ran close to
// single-threaded. When torch's GNU OpenMP runtime is loaded, the tasks run on its team instead:
// the spinning worker takes them at once. Its entry point is GOMP_parallel, the libgomp ABI a
// `#pragma omp parallel` compiles to: fn(data) on every thread of a team of num_threads,
// the caller included, returning when all have finished.
using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);

struct OmpJob {
  const std::function<void(int64_t)>* fn;
  int64_t n_tasks;
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  std::exception_ptr error;
};

void omp_body(void* data) {
  OmpJob& job = *static_cast<OmpJob*>(data);
  const bool outer = tl_inside_task;
  tl_inside_task = true;  // nested parallel calls run inline
  for (int64_t task = job.next.fetch_add(1); task < job.n_tasks; task = job.next.fetch_add(1)) {
    try {
      (*job.fn)(task);
    } catch (...) {  // an exception must not unwind through libgomp's C frames
      std::lock_guard<std::mutex> lock(job.mutex);
      if (!job.error) job.error = std::current_exception();
    }
  }
  tl_inside_task = outer;
}

// GOMP_parallel of the libgomp this process already has loaded (torch's), or null: when
// PYDECODE_PARALLEL=pool, when no libgomp is loaded (a torch built with another OpenMP), and in
// a forked child (libgomp's team does not survive fork()).
std::atomic<bool> g_forked{false};
const int g_fork_handler = pthread_atfork(nullptr, nullptr, [] { g_forked.store(true); });

GompParallel torch_omp() {
  static const GompParallel entry = []() -> GompParallel {
    const char* env = std::getenv("PYDECODE_PARALLEL");
    if (env != nullptr && std::strcmp(env, "pool") == 0) return nullptr;
    void* lib = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD);  // only if already loaded
    if (lib == nullptr) return nullptr;
    return reinterpret_cast<GompParallel>(dlsym(lib, "GOMP_parallel"));
  }();
  return g_forked.load(std::memory_order_relaxed) ? nullptr : entry;
}

}  // namespace

int num_threads() {
  static const int threads = [] {
    if (const char* env = std::getenv("PYDECODE_NUM_THREADS")) {
      const int n = std::atoi(env);
      if (n >= 1) return n;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }();
  return threads;
}

void parallel_tasks(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  if (n_tasks <= 0) return;
  if (n_tasks == 1 || tl_inside_task || num_threads() == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  if (const GompParallel gomp = torch_omp()) {
    OmpJob job;
    job.fn = &fn;
    job.n_tasks = n_tasks;
    gomp(omp_body, &job, static_cast<unsigned>(std::min<int64_t>(num_threads(), n_tasks)), 0);
    if (job.error) std::rethrow_exception(job.error);
    return;
  }
  pool().run(n_tasks, fn);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // Up to 4 chunks per thread, claimed dynamically: a worker that starts late (on the 2-vCPU VM,
  // torch's OpenMP threads spin for ~0.5 ms after each parallel op, so right after the model's
  // lm_head our worker waits for a core) then costs its share of the chunks, not the whole call
  // (beam top-k at 32 x 32000 after a linear: 1.4 ms with 2 chunks, alone 0.55 ms).
  const int64_t chunks = std::min<int64_t>(4 * int64_t{num_threads()}, (n + grain - 1) / grain);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t per = (n + chunks - 1) / chunks;
  parallel_tasks(chunks, [&](int64_t c) {
    const int64_t begin = c * per;
    const int64_t end = std::min(n, begin + per);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace pydecode::cpu
