// IdentityIndex: identity embeddings of candidate datasets in a FAISS index, with their metadata
// and calibrated match thresholds. FAISS is included only in src/identity/index.cpp (pimpl).
//
// Vectors are embeddings [N, d] float32, L2-normalised (models::Embedder guarantees it).
// Every search result is reported as a cosine similarity in [-1, 1], whatever the metric:
// "cosine" is FAISS inner product; "l2" is squared L2 distance d2, reported as 1 - d2 / 2
// (the same number for unit vectors). Thresholds are therefore comparable across metrics.
//
// Ids are row numbers: the i-th vector ever added has id i, also after --append, and items.csv
// row i describes it.
//
// On disk (one folder per index, DESIGN.md):
//   index.faiss    the FAISS index (faiss::write_index)
//   items.csv      id,identity,path,dataset
//   lists.ivfdata  (IVF indexes merged from shards with their lists on disk) the inverted lists,
//                  memory-mapped at query time: a query process holds the quantizer, not the codes
//   manifest.json  format, embedder id and file hash, dim, metric, factory, count, build options,
//                  calibration (pair and search thresholds per FAR), build, created time, and
//                  integrity: the generation, the files it names (index, items, lists) with their
//                  size and FNV-1a hash, and a checksum of the manifest itself.
// Each save after the first (--append) is a new generation: index.gN.faiss and items.gN.csv are
// written beside the old files and manifest.json, which names them, is switched last by one
// atomic rename; the old generation's files are removed after. A kill at any instant leaves
// the old state or the new one, never a mix.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rewind/core/progress.h"

namespace rw::identity {

struct IndexOptions {
  std::string factory = "Flat";      ///< FAISS index_factory string: Flat, HNSW32, IVF4096,PQ32, ...
  std::string metric = "cosine";     ///< cosine (inner product) | l2
  int hnsw_ef_search = 128;          ///< HNSW search breadth (recall vs speed)
  int hnsw_ef_construction = 80;     ///< HNSW build breadth
  int ivf_nprobe = 32;               ///< IVF lists visited per query
  std::vector<double> fars = {1e-2, 1e-3, 1e-4};  ///< operating points calibrated at build time
  int64_t calib_queries = 20000;     ///< at most this many leave-identity-out queries for search thresholds
  uint64_t seed = 1;                 ///< sampling seed for calibration
};

struct Item {
  std::string identity;
  std::string path;
  std::string dataset;
};

/// One operating point. Two kinds of threshold, both as cosine similarity:
/// - pair (1:1 verification): at most FAR of impostor pairs score above it;
/// - search (1:N identification, what `index query` uses): at most FAR of queries from a person
///   NOT in the index get a top-1 match above it. Estimated leave-one-identity-out: each sampled
///   item queries the index with its own identity removed. Always >= the pair threshold.
struct Threshold {
  double far = 0;
  double pair = 0;
  double search = 0;
  double pair_tar = -1;        ///< genuine pairs above `pair` (-1 without genuine pairs)
  double search_tpir = -1;     ///< leave-one-image-out queries whose rank-1 is the right identity and above `search`
  bool search_resolved = true; ///< false when there were fewer than 1/FAR impostor queries (threshold = their max)
};

struct CalibrationReport {
  int64_t genuine_pairs = 0, impostor_pairs = 0, impostor_queries = 0, genuine_queries = 0;
  std::vector<Threshold> points;
};

struct Match {
  int64_t id = -1;          ///< row in items (-1: fewer than k results)
  float similarity = 0;     ///< cosine similarity
};

class IdentityIndex {
 public:
  /// A new, empty index. Throws Error{kUsage} for a factory string FAISS rejects (the message
  /// lists working examples) or an unknown metric.
  IdentityIndex(int64_t dim, const IndexOptions& options);
  ~IdentityIndex();
  IdentityIndex(IdentityIndex&&) noexcept;
  IdentityIndex& operator=(IdentityIndex&&) noexcept;

  /// Loads an index folder. Throws Error{kInput} naming the file for a missing, truncated,
  /// damaged or foreign index file, a malformed or edited manifest, or an items file whose count
  /// differs from the index. Sizes are always checked; `verify` = false skips the content hashes
  /// (for very large on-disk indexes). The structure (HNSW graph, IVF lists, code arrays) is
  /// validated either way, so a damaged file is an error, never a crash.
  static IdentityIndex load(const std::string& dir, bool verify = true);
  /// What load checked: "verified" (hashes), "sizes only (hash check skipped)", "legacy" (an older
  /// manifest without hashes) or "not saved".
  const std::string& integrity() const;
  /// Writes the three files atomically. `extra` is merged into manifest.json (embedder, options).
  void save(const std::string& dir, const nlohmann::json& extra = {}) const;

  int64_t dim() const;
  int64_t size() const;
  /// The item with id `id` (0 <= id < size()); items are held as items.csv text and parsed on
  /// demand, so a 10M-item index costs its file size in RAM.
  Item item(int64_t id) const;
  const IndexOptions& options() const;
  /// True when the index must be trained before adding (IVF, PQ) and has not been.
  bool needs_training() const;

  /// Adds embeddings [n, dim] with their metadata (ids continue from size()). Trains first when
  /// needed (on these vectors; IVF needs at least as many vectors as lists).
  void add(const at::Tensor& embeddings, const std::vector<Item>& items, const ProgressFn& progress = {});

  /// Changes the HNSW search breadth of a built (or loaded) index; no effect on other types.
  void set_hnsw_ef_search(int ef);
  /// Changes the IVF lists visited per query; no effect on other types.
  void set_ivf_nprobe(int nprobe);

  /// Top-k for each query [q, dim]: result[i] has k matches, best first.
  std::vector<std::vector<Match>> search(const at::Tensor& queries, int k) const;

  /// The stored vectors (exact for Flat/HNSW; decoded approximations for PQ). Throws
  /// Error{kInput} when the index type cannot reconstruct.
  at::Tensor reconstruct_all() const;

  /// Calibrates thresholds from the indexed vectors (pairs and leave-identity-out searches),
  /// stores them in the manifest and returns them.
  const CalibrationReport& calibrate(const ProgressFn& progress = {});
  const CalibrationReport& calibration() const;
  /// Search threshold for `far` (must be one of the calibrated FARs, or between two: the
  /// stricter neighbour is used). Throws Error{kUsage} listing the calibrated FARs otherwise.
  double search_threshold(double far) const;
  double pair_threshold(double far) const;

  /// How the index is laid out: type, count, and for IVF the list sizes, code size and whether
  /// the lists are in memory or memory-mapped from a file (on-disk indexes, ivf_shards.h).
  std::string layout() const;

  /// Merges IVF shards (ivf_shards.h) into an index whose item `id` is item_of(id).
  /// `keys[id]` is the key (ascending) that the shards stored for that item; every key must be in
  /// exactly one shard. Lists go to `lists_path` (memory-mapped; the folder's next generation
  /// name, see save) or stay in memory when it is "". The entries of each list are in id order,
  /// so the index equals one built by adding the same vectors in one process.
  static IdentityIndex merge_ivf_shards(const IndexOptions& options, const std::string& trained,
                                        const std::vector<std::string>& shard_files, const std::vector<int64_t>& keys,
                                        const std::function<Item(int64_t id)>& item_of, const std::string& lists_path,
                                        const ProgressFn& progress = {});
  /// The path `merge_ivf_shards` should write on-disk lists to for a save into `dir`.
  static std::string next_lists_path(const std::string& dir);

  /// manifest.json as written (plus what `extra` added at save/load).
  nlohmann::json manifest() const;

 private:
  IdentityIndex();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Exact top-k by brute force (the slow reference that tests and benchmarks compare against).
std::vector<std::vector<Match>> brute_force_search(const at::Tensor& base, const at::Tensor& queries, int k);

}  // namespace rw::identity
