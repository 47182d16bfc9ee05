#include "rewind/identity/ivf_shards.h"

#include <faiss/IVFlib.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "index_impl.h"
#include "rewind/core/error.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/run_record.h"

namespace rw::identity {

namespace {

namespace fs = std::filesystem;
using idx_t = faiss::Index::idx_t;

std::unique_ptr<faiss::Index> make(const std::string& factory, int64_t dim, const std::string& metric) {
  try {
    return std::unique_ptr<faiss::Index>(faiss::index_factory(int(dim), factory.c_str(), metric_of(metric)));
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Usage, "FAISS rejects the factory string '", factory, "' for ", dim, "-d vectors: ", e.what());
  }
}

faiss::IndexIVF* ivf_of(faiss::Index* index, const std::string& what) {
  auto* ivf = faiss::ivflib::try_extract_index_ivf(index);
  RW_CHECK(ivf, Usage, what, " is not an IVF index: sharded IVF builds need an IVF factory (IVF4096,PQ32, "
           "IVF65536,PQ16, OPQ16,IVF4096,PQ16 ...)");
  return ivf;
}

std::unique_ptr<faiss::Index> read(const std::string& path, int flags = 0) {
  RW_CHECK(fs::is_regular_file(path), Input, "index file ", path, " does not exist");
  try {
    return std::unique_ptr<faiss::Index>(faiss::read_index(path.c_str(), flags));
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Input, path, " is not a readable FAISS index (truncated or foreign file): ", e.what());
  } catch (const std::exception& e) {
    RW_FAIL(Input, path, " is not a readable FAISS index (a size field is damaged: ", e.what(), ")");
  }
}

/// One list's entries gathered from the shards, in id order.
struct Entry {
  int64_t id;
  uint32_t shard;
  uint32_t pos;
};

}  // namespace

int64_t ivf_nlist(const std::string& factory, int64_t dim, const std::string& metric) {
  auto index = make(factory, dim, metric);
  return int64_t(ivf_of(index.get(), "'" + factory + "'")->nlist);
}

int64_t ivf_train_sample_size(int64_t nlist, int64_t available, int64_t requested) {
  const int64_t want = requested > 0 ? requested : 64 * nlist;
  return std::max<int64_t>(0, std::min(want, available));
}

void ivf_train(const IndexOptions& options, const at::Tensor& sample, const std::string& path) {
  RW_CHECK(sample.dim() == 2 && sample.size(0) > 0, Input, "the training sample must be [n, d], got ", sample.sizes());
  const int64_t d = sample.size(1);
  auto index = make(options.factory, d, options.metric);
  auto* ivf = ivf_of(index.get(), "'" + options.factory + "'");
  RW_CHECK(sample.size(0) >= int64_t(ivf->nlist), Input, "training ", options.factory, " needs at least ", ivf->nlist,
           " vectors (FAISS advises 39 a list), got ", sample.size(0), ": use fewer lists or a larger sample");
  auto x = as_float_rows(sample, d, "the training sample");
  check_embeddings(x);
  ivf->cp.seed = int(options.seed);
  // polysemous training (FAISS's default for "PQ" in a factory string) reorders PQ centroids for
  // Hamming filtering, which rewind never uses; it took 98 of 98 s training IVF256,PQ32 on 20k
  if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(ivf)) pq->do_polysemous_training = false;
  if (std::getenv("REWIND_FAISS_VERBOSE")) ivf->verbose = ivf->cp.verbose = true;
  try {
    index->train(x.size(0), x.data_ptr<float>());
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Input, "FAISS could not train ", options.factory, ": ", e.what());
  }
  write_index_atomic(index.get(), path);
}

void ivf_add_shard(const std::string& trained, const at::Tensor& vectors, const at::Tensor& keys, const std::string& path) {
  auto index = read(trained);
  ivf_of(index.get(), trained);
  RW_CHECK(index->is_trained, Input, trained, " is not trained; make it with ivf_train (rewind index build --train-only)");
  RW_CHECK(index->ntotal == 0, Input, trained, " already holds ", index->ntotal, " vectors: give the empty trained index");
  auto x = as_float_rows(vectors, index->d, "a shard's vectors");
  auto k = keys.to(torch::kCPU, torch::kLong).contiguous();
  RW_CHECK(k.dim() == 1 && k.size(0) == x.size(0), Input, "a shard needs one key per vector: ", k.sizes(), " for ",
           x.size(0));
  if (x.size(0) > 0) {
    check_embeddings(x);
    RW_CHECK(k.size(0) < 2 || (k.slice(0, 1) > k.slice(0, 0, -1)).all().item<bool>(), Input,
             "a shard's keys must be ascending");
    static_assert(sizeof(idx_t) == sizeof(int64_t));
    try {
      index->add_with_ids(x.size(0), x.data_ptr<float>(), reinterpret_cast<const idx_t*>(k.data_ptr<int64_t>()));
    } catch (const faiss::FaissException& e) {
      RW_FAIL(Internal, "FAISS failed adding a shard's vectors: ", e.what());
    }
  }
  write_index_atomic(index.get(), path);
}

std::string IdentityIndex::next_lists_path(const std::string& dir) {
  return dir + "/" + generation_file("lists", ".ivfdata", current_generation_number(dir) + 1);
}

IdentityIndex IdentityIndex::merge_ivf_shards(const IndexOptions& options, const std::string& trained,
                                              const std::vector<std::string>& shard_files,
                                              const std::vector<int64_t>& keys, const std::function<Item(int64_t)>& item_of,
                                              const std::string& lists_path, const ProgressFn& progress) {
  RW_CHECK(std::is_sorted(keys.begin(), keys.end()) && std::adjacent_find(keys.begin(), keys.end()) == keys.end(),
           Internal, "merge_ivf_shards: keys must be ascending and distinct");
  IdentityIndex out;
  auto& im = *out.impl_;
  im.opt = options;
  im.created_utc = io::utc_now_iso();
  im.index = read(trained);
  auto* ivf = ivf_of(im.index.get(), trained);
  RW_CHECK(im.index->is_trained && im.index->ntotal == 0, Input, trained, " is not an empty trained index");
  RW_CHECK(im.index->metric_type == metric_of(options.metric), Input, trained, " was trained for another metric than ",
           options.metric);
  im.dim = im.index->d;
  const size_t nlist = ivf->nlist, code_size = ivf->code_size;

  // the shards, their lists read through mmap (memory stays small whatever their size)
  std::vector<std::unique_ptr<faiss::Index>> shards;
  std::vector<const faiss::InvertedLists*> lists;
  for (const auto& f : shard_files) {
    shards.push_back(read(f, faiss::IO_FLAG_MMAP));
    auto* s = ivf_of(shards.back().get(), f);
    RW_CHECK(s->nlist == nlist && s->code_size == code_size && s->d == ivf->d, Input, f, " was not made from ", trained,
             " (other lists, code size or dimension)");
    lists.push_back(s->invlists);
  }
  RW_CHECK(shards.size() < (size_t(1) << 31), Usage, "too many shards");
  auto id_of = [&](idx_t key, const std::string& file) {
    auto it = std::lower_bound(keys.begin(), keys.end(), int64_t(key));
    RW_CHECK(it != keys.end() && *it == key, Input, file, " holds key ", int64_t(key),
             " that no item has: the shard's index and items disagree; rerun that shard");
    return int64_t(it - keys.begin());
  };

  // per list: the entries of every shard, remapped to ids and sorted
  std::vector<size_t> sizes(nlist);
  for (size_t l = 0; l < nlist; ++l)
    for (const auto* il : lists) sizes[l] += il->list_size(l);
  size_t total = 0;
  for (auto s : sizes) total += s;
  RW_CHECK(total == keys.size(), Input, "the shards hold ", total, " vectors but the items list ", keys.size(),
           ": a shard is missing, repeated or out of date; rerun it");

  faiss::InvertedLists* merged = nullptr;
  faiss::OnDiskInvertedLists* od = nullptr;
  std::unique_ptr<faiss::InvertedLists> owner;
  const size_t entry = code_size + sizeof(idx_t);
  if (lists_path.empty()) {
    owner = std::make_unique<faiss::ArrayInvertedLists>(nlist, code_size);
  } else {
    // laid out like OnDiskInvertedLists::merge_from (each list: codes[capacity], then ids), the
    // file sized and mapped here
    auto* d = new faiss::OnDiskInvertedLists(nlist, code_size, lists_path.c_str());
    owner.reset(d);
    size_t off = 0;
    for (size_t l = 0; l < nlist; ++l) {
      d->lists[l].size = sizes[l];
      d->lists[l].capacity = sizes[l];
      d->lists[l].offset = off;
      off += sizes[l] * entry;
    }
    std::error_code ec;
    if (fs::path(lists_path).has_parent_path()) fs::create_directories(fs::path(lists_path).parent_path(), ec);
    fs::remove(lists_path, ec);
    const int fd = ::open(lists_path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    RW_CHECK(fd >= 0, Input, "cannot create ", lists_path, ": ", std::strerror(errno));
    const int rc = ::ftruncate(fd, off_t(off));
    const int err = errno;
    ::close(fd);
    RW_CHECK(rc == 0, Input, "cannot size ", lists_path, " to ", off, " bytes: ", std::strerror(err), " (disk full?)");
    d->totsize = off;
    d->slots.clear();
    if (off > 0) d->do_mmap();
    od = d;
  }
  merged = owner.get();

  std::vector<char> seen(keys.size(), 0);
  std::vector<Entry> es;
  std::vector<idx_t> ids;
  std::vector<uint8_t> codes;
  for (size_t l = 0; l < nlist; ++l) {
    es.clear();
    for (size_t s = 0; s < lists.size(); ++s) {
      const size_t n = lists[s]->list_size(l);
      if (n == 0) continue;
      faiss::InvertedLists::ScopedIds sid(lists[s], l);
      // a mapped list's ids sit wherever FAISS laid them out in the file (after codes of any
      // size), so they may be misaligned: copied out, not loaded through an idx_t pointer (UBSan)
      const auto* raw = reinterpret_cast<const char*>(sid.get());
      for (size_t j = 0; j < n; ++j) {
        idx_t key;
        std::memcpy(&key, raw + j * sizeof(idx_t), sizeof key);
        const int64_t id = id_of(key, shard_files[s]);
        RW_CHECK(!seen[size_t(id)], Input, shard_files[s], " repeats key ", keys[size_t(id)],
                 " of another shard: two shards overlap; rerun them with the same --shard count");
        seen[size_t(id)] = 1;
        es.push_back({id, uint32_t(s), uint32_t(j)});
      }
    }
    std::sort(es.begin(), es.end(), [](const Entry& a, const Entry& b) { return a.id < b.id; });
    ids.resize(es.size());
    codes.resize(es.size() * code_size);
    for (size_t j = 0; j < es.size(); ++j) {
      ids[j] = es[j].id;
      faiss::InvertedLists::ScopedCodes sc(lists[es[j].shard], l, es[j].pos);
      std::memcpy(codes.data() + j * code_size, sc.get(), code_size);
    }
    if (es.empty()) continue;
    if (od)
      od->update_entries(l, 0, es.size(), ids.data(), codes.data());
    else
      merged->add_entries(l, es.size(), ids.data(), codes.data());
    if (progress && (l % 256 == 0 || l + 1 == nlist)) report_progress(progress, {"merge lists", int64_t(l + 1), int64_t(nlist), ""});
  }
  if (od && od->totsize > 0)
    RW_CHECK(::msync(od->ptr, od->totsize, MS_SYNC) == 0, Input, "cannot write ", lists_path, ": ",
             std::strerror(errno), " (disk full?)");
  shards.clear();
  ivf->replace_invlists(owner.release(), /*own=*/true);
  ivf->ntotal = idx_t(total);
  im.index->ntotal = idx_t(total);
  try {
    ivf->make_direct_map();  // so calibration can reconstruct the sampled vectors
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Internal, "FAISS could not map the merged lists: ", e.what());
  }
  for (size_t i = 0; i < keys.size(); ++i) im.items.add(item_of(int64_t(i)));
  im.lists_path = lists_path;
  im.apply_search_params();
  return out;
}

}  // namespace rw::identity
