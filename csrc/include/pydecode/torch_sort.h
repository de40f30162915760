// torch.sort and torch.topk's order of equal values on CPU, without sorting the whole row.
// Torch-free, header-only.
//
// On CPU, torch.sort(stable=False) is libstdc++'s std::sort over (value, index) pairs with
// comparator "a < b, NaN last", and torch.topk is std::partial_sort (k * 64 <= n) or
// std::nth_element + std::sort (else) over (value, index) pairs with "a > b, NaN first"
// (both verified bit for bit against torch 2.13 on rows full of ties). Where equal values
// straddle a cut (transformers' top-p boundary, min_tokens_to_keep), which indices land on
// each side is decided by that algorithm, so pydecode replays it:
// * sorted_positions: libstdc++'s introsort (median-of-three pivot, unguarded partition,
//   16-element leaves, depth limit 2 floor(log2 n) then heapsort, final insertion sort),
//   following only the partitions that overlap the positions asked for: expected ~2n steps
//   instead of n log n. Leaves end up ordered, and the final insertion sort is stable within
//   them, so the asked positions come out exactly as std::sort leaves them.
// * topk_indices calls std::partial_sort / std::nth_element themselves (pydecode is built
//   against libstdc++ like torch's Linux wheels).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace pydecode {

using ValueIndex = std::pair<float, int64_t>;

// torch's ascending sort comparator (NaN sorts last).
inline bool sort_less(const ValueIndex& a, const ValueIndex& b) {
  return (!std::isnan(a.first) && std::isnan(b.first)) || (a.first < b.first);
}

// torch.topk's "largest" comparator (NaN first).
inline bool topk_before(const ValueIndex& a, const ValueIndex& b) {
  return (std::isnan(a.first) && !std::isnan(b.first)) || (a.first > b.first);
}

namespace detail {

inline int64_t floor_log2(int64_t n) {
  int64_t k = 0;
  while (n > 1) {
    n >>= 1;
    ++k;
  }
  return k;
}

class IntroSortReplay {
 public:
  IntroSortReplay(std::vector<ValueIndex>& a, int64_t p0, int64_t p1) : a_(a), p0_(p0), p1_(p1) {}

  void run() {
    const int64_t n = static_cast<int64_t>(a_.size());
    if (n > 1) loop(0, n, 2 * floor_log2(n));
    // Final insertion sort, stable, only over the leaves that overlap [p0, p1).
    for (const auto& leaf : leaves_) insertion_sort(leaf.first, leaf.second);
  }

 private:
  static constexpr int64_t kThreshold = 16;  // libstdc++'s _S_threshold

  bool overlaps(int64_t first, int64_t last) const { return first < p1_ && last > p0_; }

  void loop(int64_t first, int64_t last, int64_t depth) {
    while (last - first > kThreshold) {
      if (!overlaps(first, last)) return;
      if (depth == 0) {
        // std::__partial_sort(first, last, last): heap select + sort_heap, which is what
        // std::partial_sort does with middle == last.
        std::partial_sort(a_.begin() + first, a_.begin() + last, a_.begin() + last, sort_less);
        return;
      }
      --depth;
      const int64_t cut = partition_pivot(first, last);
      loop(cut, last, depth);
      last = cut;
    }
    if (overlaps(first, last)) leaves_.emplace_back(first, last);
  }

  void move_median_to_first(int64_t result, int64_t x, int64_t y, int64_t z) {
    if (sort_less(a_[x], a_[y])) {
      if (sort_less(a_[y], a_[z])) std::swap(a_[result], a_[y]);
      else if (sort_less(a_[x], a_[z])) std::swap(a_[result], a_[z]);
      else std::swap(a_[result], a_[x]);
    } else if (sort_less(a_[x], a_[z])) {
      std::swap(a_[result], a_[x]);
    } else if (sort_less(a_[y], a_[z])) {
      std::swap(a_[result], a_[z]);
    } else {
      std::swap(a_[result], a_[y]);
    }
  }

  int64_t partition_pivot(int64_t first, int64_t last) {
    const int64_t mid = first + (last - first) / 2;
    move_median_to_first(first, first + 1, mid, last - 1);
    int64_t lo = first + 1;
    int64_t hi = last;
    const int64_t pivot = first;
    while (true) {
      while (sort_less(a_[lo], a_[pivot])) ++lo;
      --hi;
      while (sort_less(a_[pivot], a_[hi])) --hi;
      if (!(lo < hi)) return lo;
      std::swap(a_[lo], a_[hi]);
      ++lo;
    }
  }

  void insertion_sort(int64_t first, int64_t last) {
    for (int64_t i = first + 1; i < last; ++i) {
      const ValueIndex v = a_[i];
      int64_t j = i;
      while (j > first && sort_less(v, a_[j - 1])) {
        a_[j] = a_[j - 1];
        --j;
      }
      a_[j] = v;
    }
  }

  std::vector<ValueIndex>& a_;
  int64_t p0_, p1_;
  std::vector<std::pair<int64_t, int64_t>> leaves_;
};

}  // namespace detail

// Rearranges `a` (a row as torch.sort receives it: (value, index) in index order) so that
// positions [p0, p1) hold exactly what std::sort(a, sort_less) would put there.
inline void sorted_positions(std::vector<ValueIndex>& a, int64_t p0, int64_t p1) {
  detail::IntroSortReplay(a, p0, p1).run();
}

// The k indices torch.topk(row, k) returns (in its output order), from (value, index) pairs in
// index order (the vector is reordered).
inline void topk_indices(std::vector<ValueIndex>& q, int64_t k, std::vector<int64_t>& out) {
  const int64_t n = static_cast<int64_t>(q.size());
  if (k * 64 <= n) {
    std::partial_sort(q.begin(), q.begin() + k, q.end(), topk_before);
  } else {
    std::nth_element(q.begin(), q.begin() + (k - 1), q.end(), topk_before);
    std::sort(q.begin(), q.begin() + (k - 1), topk_before);
  }
  out.clear();
  for (int64_t i = 0; i < k; ++i) out.push_back(q[i].second);
}

}  // namespace pydecode
