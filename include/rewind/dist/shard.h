// A shard of a run: the rows i with (i / block) % count == index, i.e. blocks of `block`
// consecutive rows dealt round-robin. Dealing keeps shards balanced whatever the order of the rows
// (a manifest sorted by identity, a few huge identities); every per-row quantity (seeds,
// embeddings, scores) is a function of the row alone; and with block = the command's batch, each
// batch a shard computes holds the same rows as the batch one process computes, so float
// arithmetic that depends on the batch (BLAS blocking) gives the same bits too.
// Header-only: the data module's streams use it without depending on the launchers.
#pragma once

#include <cstdint>
#include <string>

namespace rw::dist {

struct Shard {
  int64_t index = 0;   ///< this shard, in [0, count)
  int64_t count = 1;   ///< number of shards; 1 = everything
  int64_t block = 1;   ///< consecutive rows dealt together (set by each command to its batch)
  const char* source = "";  ///< where it came from: "--shard", "MPI (OMPI_COMM_WORLD_RANK/SIZE)", ... (a literal)
  bool contains(int64_t row) const { return count <= 1 || (row / (block > 0 ? block : 1)) % count == index; }
  /// This shard dealing blocks of `b` rows.
  Shard blocks_of(int64_t b) const {
    Shard s = *this;
    s.block = b > 0 ? b : 1;
    return s;
  }
  bool whole() const { return count <= 1; }
  /// "part-I-of-N": the folder under --out a shard writes.
  std::string name() const { return "part-" + std::to_string(index) + "-of-" + std::to_string(count); }
  /// "I/N"
  std::string str() const { return std::to_string(index) + "/" + std::to_string(count); }
};

}  // namespace rw::dist
