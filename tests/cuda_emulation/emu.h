// A CPU model of the CUDA execution features the sampling and beam kernels use, so their logic
// (indexing, radix descents, tie handling, synchronisation) can be exercised on a machine
// without a GPU: one std::thread per CUDA thread, a std::barrier per block (__syncthreads) and
// per warp (shuffles, ballots), std::atomic_ref for atomics. __shared__ becomes `static`: the
// blocks of a launch run one after another, so a static local is exactly one block's shared
// memory. Host math (expf, log) stands in for CUDA's; results can differ from a GPU in the last
// bit of a float, never in control flow that the tests check.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__

enum cudaError_t { cudaSuccess = 0 };
using cudaStream_t = void*;

struct uint4 {
  unsigned x, y, z, w;
};

struct EmuDim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace emu {
// One block's barriers, shuffle slots and (PYDECODE_BLOCK_SHARED) shared memory.
struct Block {
  explicit Block(unsigned threads) : block(static_cast<std::ptrdiff_t>(threads)), slots(threads, 0) {
    for (unsigned w = 0; w < (threads + 31) / 32; ++w) warps.emplace_back(std::make_unique<std::barrier<>>(32));
    // Shared memory starts undefined on a GPU: a recognisable non-zero pattern here, so a read of a
    // field nothing wrote shows up as a wrong value (or an out-of-range index) instead of a zero.
    std::memset(shared, 0x5A, sizeof(shared));
  }
  std::barrier<> block;
  unsigned long long syncs = 0;  // __syncthreads the block passed (counted by its thread 0)
  // Atomics per address (shared, static or global) when emu::count_atomics is on, merged from the
  // threads' own counts as they finish.
  std::mutex atomics_mutex;
  std::unordered_map<const void*, unsigned long long> atomics;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<uint64_t> slots;
  alignas(64) unsigned char shared[65536] = {};
};
inline thread_local Block* g_block = nullptr;
// The most __syncthreads one block of a launch passed, the largest over the launches since the
// last take_block_syncs(): a proxy for a row's latency where one block (or a row's blocks in step)
// runs alone, as at batch 1.
inline std::atomic<unsigned long long> max_block_syncs{0};
// The longest one-read list (csrc/cuda/scan_list.cuh) a block built since the last take_scan_list().
inline std::atomic<unsigned long long> max_scan_list{0};
// a = max(a, v), for the maxima the blocks report.
inline void raise_to(std::atomic<unsigned long long>& a, unsigned long long v) {
  unsigned long long seen = a.load();
  while (seen < v && !a.compare_exchange_weak(seen, v)) {
  }
}

// Atomic counting (off unless a tool turns it on: bench/cuda_row_reads.py): on a GPU, atomics a
// warp aims at one shared word run one after another, so a histogram whose entries pile into a
// few bins costs time the read count does not show. Each thread counts its atomics per address;
// when a block ends, its total and its hottest address's count are added to / maxed into these.
inline std::atomic<bool> count_atomics{false};
inline thread_local std::unordered_map<const void*, unsigned long long>* t_atomics = nullptr;
inline std::atomic<unsigned long long> total_atomics{0}, max_word_atomics{0};
inline void note_block_atomics(const Block& b) {
  unsigned long long total = 0, hottest = 0;
  for (const auto& [address, n] : b.atomics) {
    total += n;
    hottest = n > hottest ? n : hottest;
  }
  total_atomics += total;
  raise_to(max_word_atomics, hottest);
}
inline void note_block_syncs(const Block& b) {
  note_block_atomics(b);
  raise_to(max_block_syncs, b.syncs);
}
inline thread_local EmuDim3 t_thread, t_block;
inline EmuDim3 g_block_dim, g_grid_dim;

// Starts the threads of block (bx, by) into `pool`.
inline void start_block(Block& b, unsigned bx, unsigned by, unsigned threads, const std::function<void()>& body,
                        std::vector<std::thread>& pool) {
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&b, &body, bx, by, t]() {
      g_block = &b;
      t_thread = EmuDim3{t, 0, 0};
      t_block = EmuDim3{bx, by, 0};
      if (!count_atomics.load()) {
        body();
        return;
      }
      std::unordered_map<const void*, unsigned long long> mine;
      t_atomics = &mine;
      body();
      t_atomics = nullptr;
      const std::lock_guard<std::mutex> hold(b.atomics_mutex);
      for (const auto& [address, n] : mine) b.atomics[address] += n;
    });
  }
}

// Runs body() for every thread of every block of a (grid_x, grid_y) launch of `threads` threads,
// one block after another.
inline void launch(unsigned grid_x, unsigned grid_y, unsigned threads, const std::function<void()>& body) {
  g_block_dim = EmuDim3{threads, 1, 1};
  g_grid_dim = EmuDim3{grid_x, grid_y, 1};
  for (unsigned by = 0; by < grid_y; ++by) {
    for (unsigned bx = 0; bx < grid_x; ++bx) {
      Block b(threads);
      std::vector<std::thread> pool;
      start_block(b, bx, by, threads, body, pool);
      for (auto& th : pool) th.join();
      note_block_syncs(b);
    }
  }
}

// The same, with the grid_y blocks of each grid x running at once (a cooperative launch whose
// blocks wait for each other: the split-vocabulary rows). Kernels run this way must declare their
// shared memory with PYDECODE_BLOCK_SHARED.
inline void launch_rows_together(unsigned grid_x, unsigned grid_y, unsigned threads,
                                 const std::function<void()>& body) {
  g_block_dim = EmuDim3{threads, 1, 1};
  g_grid_dim = EmuDim3{grid_x, grid_y, 1};
  for (unsigned bx = 0; bx < grid_x; ++bx) {
    std::vector<std::unique_ptr<Block>> blocks;
    std::vector<std::thread> pool;
    for (unsigned by = 0; by < grid_y; ++by) {
      blocks.emplace_back(std::make_unique<Block>(threads));
      start_block(*blocks.back(), bx, by, threads, body, pool);
    }
    for (auto& th : pool) th.join();
    for (const auto& b : blocks) note_block_syncs(*b);
  }
}

template <class T>
T& block_shared() {
  static_assert(sizeof(T) <= sizeof(Block::shared), "raise Block::shared");
  return *reinterpret_cast<T*>(g_block->shared);
}

template <class T>
T atomic_load(const T* p) {
  return std::atomic_ref<T>(*const_cast<T*>(p)).load();
}

template <class T>
T exchange(T v, int src_lane) {
  const unsigned t = t_thread.x;
  const unsigned w = t >> 5;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  g_block->slots[t] = bits;
  g_block->warps[w]->arrive_and_wait();
  const uint64_t got = g_block->slots[w * 32 + static_cast<unsigned>(src_lane)];
  g_block->warps[w]->arrive_and_wait();
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}
}  // namespace emu

#define threadIdx (emu::t_thread)
#define blockIdx (emu::t_block)
#define blockDim (emu::g_block_dim)
#define gridDim (emu::g_grid_dim)

inline void __syncthreads() {
  if (threadIdx.x == 0) ++emu::g_block->syncs;
  emu::g_block->block.arrive_and_wait();
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) { std::this_thread::yield(); }

template <class T>
T __shfl_xor_sync(unsigned, T v, int o) {
  return emu::exchange(v, static_cast<int>(threadIdx.x & 31) ^ o);
}
template <class T>
T __shfl_up_sync(unsigned, T v, int o) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  return emu::exchange(v, lane >= o ? lane - o : lane);
}
template <class T>
T __shfl_sync(unsigned, T v, int src) {
  return emu::exchange(v, src);
}
inline unsigned __ballot_sync(unsigned, int pred) {
  const unsigned w = threadIdx.x >> 5;
  emu::g_block->slots[threadIdx.x] = pred ? 1 : 0;
  emu::g_block->warps[w]->arrive_and_wait();
  unsigned r = 0;
  for (unsigned l = 0; l < 32; ++l) r |= emu::g_block->slots[w * 32 + l] ? (1u << l) : 0u;
  emu::g_block->warps[w]->arrive_and_wait();
  return r;
}
inline void __syncwarp(unsigned = 0xFFFFFFFFu) { emu::g_block->warps[threadIdx.x >> 5]->arrive_and_wait(); }
inline int __ffs(unsigned x) { return __builtin_ffs(static_cast<int>(x)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(unsigned x) { return x == 0 ? 32 : __builtin_clz(x); }

namespace emu {
// Bytes the kernels load through __ldg (their reads of the logits), for read-count checks.
inline std::atomic<unsigned long long> ldg_bytes{0};
}  // namespace emu

template <class T>
T __ldg(const T* p) {
  emu::ldg_bytes.fetch_add(sizeof(T), std::memory_order_relaxed);
  return *p;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned long long __float2ull_rn(float x) { return static_cast<unsigned long long>(std::nearbyint(x)); }
// IEEE double division and the round-to-nearest double -> float conversion: exactly the host's.
inline double __drcp_rn(double x) { return 1.0 / x; }
inline float __double2float_rn(double x) { return static_cast<float>(x); }

template <class T>
T atomicAdd(T* p, T v) {
  if (emu::t_atomics != nullptr) ++(*emu::t_atomics)[p];
  return std::atomic_ref<T>(*p).fetch_add(v);
}
template <class T>
T atomicMax(T* p, T v) {
  if (emu::t_atomics != nullptr) ++(*emu::t_atomics)[p];
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

using std::ceil;
#include <math.h>  // ::expf, ::logf
using std::log;
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
