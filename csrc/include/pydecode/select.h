// Selection without sorting the whole row (torch-free, header-only): the k-th largest of a
// stream of float32 keys, by a candidate buffer with a running threshold (small k) or by radix
// select on order-preserving keys (large k), plus a sort for the small sets that remain.
//
// Keys are float_key()s (float_key.h) with every NaN mapped above +inf (nan_high_key), which is
// torch.topk's order. Entries are packed as (key << 32) | (0xffffffff - index): ascending packed
// order is (key ascending, index descending), so the descending order is (key descending, index
// ascending), the "lowest index first" order pydecode breaks ties with.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "pydecode/float_key.h"
#include "pydecode/torch_cpu_math.h"

namespace pydecode {

constexpr uint32_t kNanKey = 0xffffffffu;

// float_key with every NaN mapped to kNanKey, in integer operations only (GCC vectorises it).
PYDECODE_INLINE uint32_t nan_high_key(float f) {
  uint32_t bits = float_to_bits(f);
  bits = bits == 0x80000000u ? 0u : bits;  // -0.0 -> +0.0
  const uint32_t negative = 0u - (bits >> 31);
  const uint32_t nan = 0u - static_cast<uint32_t>((bits & 0x7fffffffu) > 0x7f800000u);
  return (bits ^ (negative | 0x80000000u)) | nan;
}

inline uint64_t pack_entry(uint32_t key, uint32_t index) {
  return (static_cast<uint64_t>(key) << 32) | (0xffffffffu - index);
}
inline uint32_t entry_key(uint64_t e) { return static_cast<uint32_t>(e >> 32); }
inline uint32_t entry_index(uint64_t e) { return 0xffffffffu - static_cast<uint32_t>(e); }

// Collects the entries whose key can still be among the `keep` largest of a stream. push()
// only entries with key >= threshold() (callers test a whole block against it first, so the
// common case reads the row and compares). When the buffer fills, the keep-th largest key of
// the buffer becomes the threshold and smaller entries go: with random order the buffer sees
// about keep * ln(n / keep) pushes; a rising stream costs O(n) nth_element work in total.
// Every entry with key >= the final keep-th largest key survives (ties included).
class TopCollector {
 public:
  void reset(int64_t keep) {
    keep_ = keep < 1 ? 1 : keep;
    // 4x keep: a compaction then frees >= 3/4 of the buffer; the 256 floor keeps tiny k from
    // compacting every few pushes.
    capacity_ = static_cast<size_t>(std::max<int64_t>(4 * keep_, 256));
    threshold_ = 0;
    entries_.clear();
    entries_.reserve(capacity_);
  }

  uint32_t threshold() const { return threshold_; }

  void push(uint32_t key, uint32_t index) {
    entries_.push_back(pack_entry(key, index));
    if (entries_.size() >= capacity_) compact();
  }

  // Appends another collector's entries (for a row split across threads).
  void merge(const TopCollector& other) {
    entries_.insert(entries_.end(), other.entries_.begin(), other.entries_.end());
    threshold_ = std::min(threshold_, other.threshold_);
  }

  // The keep-th largest key (0 when fewer than keep entries were pushed); afterwards entries()
  // holds exactly the entries with key >= it.
  uint32_t finish() {
    if (static_cast<int64_t>(entries_.size()) < keep_) return 0;
    const uint32_t kth = kth_key();
    drop_below(kth);
    return kth;
  }

  std::vector<uint64_t>& entries() { return entries_; }

 private:
  uint32_t kth_key() {
    auto nth = entries_.begin() + (keep_ - 1);
    std::nth_element(entries_.begin(), nth, entries_.end(), std::greater<uint64_t>());
    return entry_key(*nth);
  }

  void drop_below(uint32_t key) {
    const uint64_t low = static_cast<uint64_t>(key) << 32;
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [low](uint64_t e) { return e < low; }),
                   entries_.end());
  }

  void compact() {
    threshold_ = kth_key();
    drop_below(threshold_);
    // Ties can keep the buffer full; grow so each compaction still frees half of it.
    if (entries_.size() * 2 > capacity_) capacity_ *= 2;
  }

  int64_t keep_ = 1;
  size_t capacity_ = 1024;
  uint32_t threshold_ = 0;
  std::vector<uint64_t> entries_;
};

// Radix select over 32-bit keys in three digit passes (11, 11, 10 bits). `histogram(shift,
// width, prefix, prefix_mask, counts)` must add, for every key with (key & prefix_mask) ==
// prefix, one to counts[(key >> shift) & ((1 << width) - 1)] (counts has 2048 zeroed slots).
// Returns the rank-th largest key (rank >= 1) and, in *greater, how many keys are larger.
template <class Histogram>
uint32_t radix_select_desc(int64_t rank, const Histogram& histogram, int64_t* greater) {
  static constexpr int kShift[3] = {21, 10, 0};
  static constexpr int kWidth[3] = {11, 11, 10};
  uint32_t prefix = 0;
  uint32_t prefix_mask = 0;
  int64_t above = 0;
  std::vector<int64_t> counts(2048);
  for (int pass = 0; pass < 3; ++pass) {
    std::fill(counts.begin(), counts.end(), 0);
    histogram(kShift[pass], kWidth[pass], prefix, prefix_mask, counts.data());
    const uint32_t mask = (1u << kWidth[pass]) - 1;
    uint32_t digit = 0;
    for (int64_t d = mask; d >= 0; --d) {
      if (above + counts[d] >= rank) {
        digit = static_cast<uint32_t>(d);
        break;
      }
      above += counts[d];
    }
    prefix |= digit << kShift[pass];
    prefix_mask |= mask << kShift[pass];
  }
  *greater = above;
  return prefix;
}

// Sorts packed entries ascending: std::sort for small sets, LSD radix (8-bit digits, constant
// digits skipped) above 2048 entries, so a degenerate set (a whole row of ties) stays O(n).
inline void sort_entries(std::vector<uint64_t>& v, std::vector<uint64_t>& tmp) {
  if (v.size() <= 2048) {
    std::sort(v.begin(), v.end());
    return;
  }
  tmp.resize(v.size());
  for (int shift = 0; shift < 64; shift += 8) {
    size_t counts[256] = {0};
    for (uint64_t e : v) ++counts[(e >> shift) & 0xff];
    if (counts[(v[0] >> shift) & 0xff] == v.size()) continue;  // every entry has this digit
    size_t pos = 0;
    for (size_t& c : counts) {
      const size_t n = c;
      c = pos;
      pos += n;
    }
    for (uint64_t e : v) tmp[counts[(e >> shift) & 0xff]++] = e;
    v.swap(tmp);
  }
}

}  // namespace pydecode
