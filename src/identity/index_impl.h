// Private to src/identity: the state behind IdentityIndex, shared by index.cpp and ivf_shards.cpp.
// FAISS is included only here and in those two files.
#pragma once

#include <faiss/AutoTune.h>
#include <faiss/IVFlib.h>
#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rewind/identity/index.h"

namespace rw::identity {

/// The items of an index held as items.csv's own text (header and rows id,identity,path,dataset)
/// plus the byte offset of each row, parsed on demand: a 10M-item index costs its file size plus
/// 8 bytes a row in RAM, not three string objects a row.
class ItemTable {
 public:
  ItemTable();
  int64_t size() const { return int64_t(starts_.size()); }
  /// Appends a row whose id is size().
  void add(const Item& it);
  /// Row `i` (0 <= i < size()).
  Item get(int64_t i) const;
  /// The file as written (header included).
  const std::string& text() const { return text_; }
  /// From items.csv's text: header checked, rows found (quotes may hold commas and newlines) and
  /// counted, each needing at least id,identity,path. Error{kInput} naming `source` otherwise.
  static ItemTable parse(std::string text, const std::string& source);

 private:
  std::string text_;
  std::vector<uint64_t> starts_;
};

struct IdentityIndex::Impl {
  int64_t dim = 0;
  IndexOptions opt;
  std::unique_ptr<faiss::Index> index;
  ItemTable items;
  CalibrationReport calib;
  bool calibrated = false;
  nlohmann::json extra = nlohmann::json::object();
  std::string created_utc;
  int64_t generation = -1;         ///< the folder generation it was loaded from (-1: never saved)
  nlohmann::json files;            ///< {index: {name, bytes, fnv1a64}, items: {...}, lists: {...}} as loaded / saved
  std::string integrity = "not saved";  ///< what load checked: "verified", "sizes only", "legacy"
  std::string lists_path;          ///< on-disk inverted lists (memory-mapped) or "" (lists in memory)

  bool l2() const { return opt.metric == "l2"; }

  void apply_search_params() {
    // only set what applies (ParameterSpace throws for parameters an index does not have)
    if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index.get())) h->hnsw.efSearch = opt.hnsw_ef_search;
    if (auto* ivf = faiss::ivflib::try_extract_index_ivf(index.get())) ivf->nprobe = std::min<size_t>(opt.ivf_nprobe, ivf->nlist);
  }
};

/// "cosine" (or "ip") -> inner product, "l2" -> L2; Error{kUsage} otherwise.
faiss::MetricType metric_of(const std::string& m);
/// `x` checked to be [n, dim] (Error{kInput} naming `what`), as contiguous float32 on the CPU.
at::Tensor as_float_rows(const at::Tensor& x, int64_t dim, const char* what);
/// faiss::write_index to `path` through a temporary file and an atomic rename; Error{kInput} on failure.
void write_index_atomic(const faiss::Index* index, const std::string& path);

/// Throws Error{kInput} when `x` [n, d] holds non-finite values, non-unit rows or one repeated
/// vector (a broken embedder would build an index that matches everyone or no one).
void check_embeddings(const at::Tensor& x);

/// "lists.ivfdata" for generation 0, "lists.g3.ivfdata" for 3 (the same rule as index / items).
std::string generation_file(const char* stem, const char* ext, int64_t gen);
/// The generation `dir` holds now (-1: none).
int64_t current_generation_number(const std::string& dir);

}  // namespace rw::identity
