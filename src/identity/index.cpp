// FAISS is included only in src/identity (this file, ivf_shards.cpp, index_impl.h).
#include "rewind/identity/index.h"
#include "index_impl.h"

#include <sstream>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexPQ.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <faiss/IVFlib.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <unordered_map>

#include "rewind/core/build_info.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/identity/calibration.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/run_record.h"

namespace rw::identity {

namespace fs = std::filesystem;
using idx_t = faiss::Index::idx_t;

constexpr int kFormat = 1;

faiss::MetricType metric_of(const std::string& m) {
  if (m == "cosine" || m == "ip") return faiss::METRIC_INNER_PRODUCT;
  if (m == "l2") return faiss::METRIC_L2;
  RW_FAIL(Usage, "unknown metric '", m, "' (use cosine or l2)");
}

at::Tensor as_float_rows(const at::Tensor& x, int64_t dim, const char* what) {
  RW_CHECK(x.dim() == 2 && x.size(1) == dim, Input, what, " must be [n, ", dim, "], got ", x.sizes());
  return x.detach().to(torch::kCPU, torch::kFloat32).contiguous();
}

void write_index_atomic(const faiss::Index* index, const std::string& path) {
  io::write_via_temp(path, [&](const std::string& tmp) {
    try {
      faiss::write_index(index, tmp.c_str());
    } catch (const faiss::FaissException& e) {
      RW_FAIL(Input, "cannot write ", path, ": ", e.what());
    }
    return true;
  });
}

namespace {

// Converts a FAISS score to cosine similarity.
inline float to_similarity(float score, bool l2) { return l2 ? 1.0f - score / 2.0f : score; }

}  // namespace

// ------------------------------------------------------------------------------------------------
// ItemTable

ItemTable::ItemTable() : text_(io::csv_line({"id", "identity", "path", "dataset"})) {}

void ItemTable::add(const Item& it) {
  starts_.push_back(text_.size());
  text_ += io::csv_line({std::to_string(starts_.size() - 1), it.identity, it.path, it.dataset});
}

Item ItemTable::get(int64_t i) const {
  RW_CHECK(i >= 0 && i < size(), Internal, "item ", i, " of ", size());
  const size_t a = starts_[size_t(i)], b = size_t(i) + 1 < starts_.size() ? starts_[size_t(i) + 1] : text_.size();
  auto rows = io::parse_csv(text_.substr(a, b - a));
  RW_CHECK(rows.size() == 1 && rows[0].size() >= 3, Internal, "items row ", i, " does not parse");
  auto& r = rows[0];
  return {std::move(r[1]), std::move(r[2]), r.size() > 3 ? std::move(r[3]) : std::string()};
}

ItemTable ItemTable::parse(std::string text, const std::string& source) {
  ItemTable t;
  t.text_ = std::move(text);
  const std::string& s = t.text_;
  const size_t n = s.size();
  // the header: the first line
  size_t pos = s.find('\n');
  const std::string head = s.substr(0, pos == std::string::npos ? n : pos);
  RW_CHECK(head.rfind("id,identity,path", 0) == 0, Input, source,
           " must start with the header id,identity,path,dataset; rebuild the index");
  pos = pos == std::string::npos ? n : pos + 1;
  int64_t line = 2;
  while (pos < n) {
    if (s[pos] == '\n' || (s[pos] == '\r' && pos + 1 < n && s[pos + 1] == '\n')) {  // empty line
      pos += s[pos] == '\n' ? 1 : 2;
      ++line;
      continue;
    }
    const size_t start = pos;
    const int64_t first_line = line;
    bool quoted = false;
    int64_t fields = 1;
    for (; pos < n; ++pos) {
      const char c = s[pos];
      if (c == '"') quoted = !quoted;  // "" inside quotes toggles twice
      else if (c == '\n') {
        ++line;
        if (!quoted) break;
      } else if (c == ',' && !quoted) ++fields;
    }
    RW_CHECK(!quoted, Input, source, " line ", first_line, " opens a quote that never closes; rebuild the index");
    RW_CHECK(fields >= 3, Input, source, " line ", first_line, " has ", fields,
             " fields, expected id,identity,path,dataset");
    t.starts_.push_back(start);
    if (pos < n) ++pos;  // past the newline
  }
  return t;
}

void check_embeddings(const at::Tensor& x) {
  const int64_t n = x.size(0);
  if (n == 0) return;
  RW_CHECK(torch::isfinite(x).all().item<bool>(), Input,
           "the embeddings contain NaN or infinite values: the embedder's outputs are broken (check the model file)");
  const auto norms = x.norm(2, 1);
  RW_CHECK((norms - 1).abs().max().item<float>() < 1e-3, Input, "the embeddings are not unit vectors (norms from ",
           norms.min().item<float>(), " to ", norms.max().item<float>(), "): zero or degenerate embedder outputs");
  RW_CHECK(n < 2 || (x - x[0]).abs().max().item<float>() > 1e-6, Input, "all ", n,
           " embeddings are the same vector: the embedder's output is constant, so it cannot tell people apart");
}

// ------------------------------------------------------------------------------------------------

IdentityIndex::IdentityIndex() : impl_(std::make_unique<Impl>()) {}
IdentityIndex::~IdentityIndex() = default;
IdentityIndex::IdentityIndex(IdentityIndex&&) noexcept = default;
IdentityIndex& IdentityIndex::operator=(IdentityIndex&&) noexcept = default;

IdentityIndex::IdentityIndex(int64_t dim, const IndexOptions& options) : impl_(std::make_unique<Impl>()) {
  RW_CHECK(dim > 0, Usage, "index dimension must be positive, got ", dim);
  impl_->dim = dim;
  impl_->opt = options;
  impl_->created_utc = io::utc_now_iso();
  auto metric = metric_of(options.metric);
  try {
    impl_->index.reset(faiss::index_factory(int(dim), options.factory.c_str(), metric));
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Usage, "FAISS rejects the factory string '", options.factory, "' for ", dim,
            "-d vectors (examples that work: Flat, HNSW32, IVF1024,Flat, IVF4096,PQ32, HNSW32,Flat): ", e.what());
  }
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(impl_->index.get())) h->hnsw.efConstruction = options.hnsw_ef_construction;
  impl_->apply_search_params();
}

int64_t IdentityIndex::dim() const { return impl_->dim; }
int64_t IdentityIndex::size() const { return impl_->index ? int64_t(impl_->index->ntotal) : 0; }
Item IdentityIndex::item(int64_t id) const { return impl_->items.get(id); }
const IndexOptions& IdentityIndex::options() const { return impl_->opt; }
const std::string& IdentityIndex::integrity() const { return impl_->integrity; }
bool IdentityIndex::needs_training() const { return !impl_->index->is_trained; }

void IdentityIndex::add(const at::Tensor& embeddings, const std::vector<Item>& items, const ProgressFn& progress) {
  auto x = as_float_rows(embeddings, impl_->dim, "embeddings");
  const int64_t n = x.size(0);
  RW_CHECK(int64_t(items.size()) == n, Internal, "add: ", n, " vectors but ", items.size(), " items");
  if (n == 0) return;
  RW_CHECK(impl_->lists_path.empty(), Usage, "this index keeps its lists on disk (built in shards): it cannot be added to; "
           "rebuild it with the new images (rewind index build, sharded)");
  check_embeddings(x);
  const float* p = x.data_ptr<float>();
  try {
    if (!impl_->index->is_trained) {
      if (auto* ivf = faiss::ivflib::try_extract_index_ivf(impl_->index.get())) {
        RW_CHECK(size_t(n) >= ivf->nlist, Usage, "the factory '", impl_->opt.factory, "' has ", ivf->nlist,
                 " lists but only ", n, " vectors to train on: use fewer lists (e.g. IVF", std::max<int64_t>(1, n / 39),
                 ",Flat) or Flat / HNSW32 for small sets");
      }
      report_progress(progress, {"train index", 0, 1, impl_->opt.factory});
      impl_->index->train(n, p);
      report_progress(progress, {"train index", 1, 1, impl_->opt.factory});
    }
    const int64_t chunk = 65536;
    for (int64_t s = 0; s < n; s += chunk) {
      int64_t m = std::min(chunk, n - s);
      impl_->index->add(m, p + s * impl_->dim);
      report_progress(progress, {"add", s + m, n, ""});
    }
    if (auto* ivf = faiss::ivflib::try_extract_index_ivf(impl_->index.get())) {
      ivf->make_direct_map();  // so vectors can be reconstructed for calibration after --append
    }
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Internal, "FAISS failed adding vectors: ", e.what());
  }
  for (const auto& it : items) impl_->items.add(it);
  impl_->calibrated = false;
}

void IdentityIndex::set_hnsw_ef_search(int ef) {
  RW_CHECK(ef > 0, Usage, "efSearch must be positive, got ", ef);
  impl_->opt.hnsw_ef_search = ef;
  impl_->apply_search_params();
}

void IdentityIndex::set_ivf_nprobe(int nprobe) {
  RW_CHECK(nprobe > 0, Usage, "nprobe must be positive, got ", nprobe);
  impl_->opt.ivf_nprobe = nprobe;
  impl_->apply_search_params();
}

std::vector<std::vector<Match>> IdentityIndex::search(const at::Tensor& queries, int k) const {
  RW_CHECK(k > 0, Usage, "k must be positive, got ", k);
  auto q = as_float_rows(queries, impl_->dim, "queries");
  const int64_t nq = q.size(0);
  std::vector<float> dist(size_t(nq) * k);
  std::vector<idx_t> lab(size_t(nq) * k);
  if (nq > 0 && size() > 0) {
    try {
      impl_->index->search(nq, q.data_ptr<float>(), k, dist.data(), lab.data());
    } catch (const faiss::FaissException& e) {
      RW_FAIL(Internal, "FAISS search failed: ", e.what());
    }
  } else {
    std::fill(lab.begin(), lab.end(), idx_t(-1));
  }
  std::vector<std::vector<Match>> out(static_cast<size_t>(nq));
  const bool l2 = impl_->l2();
  const auto& fac = impl_->opt.factory;
  const float bound = fac.find("PQ") != std::string::npos || fac.find("SQ") != std::string::npos ? 1.5f : 1.001f;
  for (int64_t i = 0; i < nq; ++i) {
    auto& row = out[size_t(i)];
    row.resize(size_t(k));
    for (int j = 0; j < k; ++j) {
      idx_t id = lab[size_t(i) * k + j];
      RW_CHECK(id >= -1 && id < idx_t(size()), Input, "the index returned neighbour ", int64_t(id), " of ", size(),
               " vectors: its index.faiss is damaged; rebuild it with rewind index build");
      row[size_t(j)].id = int64_t(id);
      row[size_t(j)].similarity = id < 0 ? -2.0f : to_similarity(dist[size_t(i) * k + j], l2);
      // cosine of unit vectors: anything else means damaged stored vectors, never a result.
      // Compressed codes (PQ, SQ) give approximate scores that can pass 1 by their quantisation
      // error (IVF4096,PQ32 at 1M: up to 1.03), so they get a margin; damage gives 1e35.
      RW_CHECK(id < 0 || (std::isfinite(row[size_t(j)].similarity) && std::abs(row[size_t(j)].similarity) <= bound), Input,
               "the index returned similarity ", row[size_t(j)].similarity, " (outside [-1, 1]",
               bound > 1.01f ? ", more than compressed codes' error" : "",
               "): its stored vectors are damaged; rebuild it with rewind index build");
    }
  }
  return out;
}

at::Tensor IdentityIndex::reconstruct_all() const {
  const int64_t n = size();
  auto out = torch::empty({n, impl_->dim}, torch::kFloat32);
  if (n == 0) return out;
  try {
    impl_->index->reconstruct_n(0, n, out.data_ptr<float>());
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Input, "this index type (", impl_->opt.factory, ") cannot return its vectors: ", e.what());
  }
  return out;
}

std::vector<std::vector<Match>> brute_force_search(const at::Tensor& base, const at::Tensor& queries, int k) {
  torch::NoGradGuard ng;
  auto b = base.to(torch::kFloat32), q = queries.to(torch::kFloat32);
  std::vector<std::vector<Match>> out(size_t(q.size(0)));
  const int64_t kk = std::min<int64_t>(k, b.size(0));
  for (int64_t s = 0; s < q.size(0); s += 1024) {
    auto sims = torch::mm(q.slice(0, s, std::min(q.size(0), s + 1024)), b.t());
    auto top = sims.topk(kk, 1);
    auto v = std::get<0>(top).contiguous(), ix = std::get<1>(top).contiguous();
    for (int64_t i = 0; i < v.size(0); ++i) {
      auto& row = out[size_t(s + i)];
      for (int64_t j = 0; j < kk; ++j) row.push_back({ix[i][j].item<int64_t>(), v[i][j].item<float>()});
      while (int64_t(row.size()) < k) row.push_back({-1, -2.0f});
    }
  }
  return out;
}

const CalibrationReport& IdentityIndex::calibrate(const ProgressFn& progress) {
  auto& im = *impl_;
  const int64_t n = size();
  RW_CHECK(n >= 2, Input, "cannot calibrate thresholds on ", n, " item(s): the index needs at least two identities");
  // identity labels
  std::unordered_map<std::string, int64_t> label_of;
  std::vector<int64_t> labels(static_cast<size_t>(n));
  std::unordered_map<int64_t, int64_t> count;
  for (int64_t i = 0; i < n; ++i) {
    auto it = label_of.emplace(im.items.get(i).identity, int64_t(label_of.size())).first;
    labels[size_t(i)] = it->second;
    ++count[it->second];
  }
  RW_CHECK(label_of.size() >= 2, Input, "cannot calibrate thresholds: every item has the same identity '",
           im.items.get(0).identity, "'; an index needs at least two identities");
  int64_t max_per_id = 0;
  for (auto& [l, c] : count) max_per_id = std::max(max_per_id, c);

  // sample of items used as calibration queries (all when small)
  auto gen = at::detail::createCPUGenerator(im.opt.seed);
  at::Tensor sample;
  if (n <= im.opt.calib_queries) {
    sample = torch::arange(n, torch::kLong);
  } else {
    sample = std::get<0>(torch::randperm(n, gen, torch::kLong).slice(0, 0, im.opt.calib_queries).sort());
  }
  const int64_t ns = sample.size(0);
  auto vecs = torch::empty({ns, im.dim}, torch::kFloat32);
  try {
    auto sp = sample.accessor<int64_t, 1>();
    for (int64_t i = 0; i < ns; ++i) im.index->reconstruct(idx_t(sp[i]), vecs.data_ptr<float>() + i * im.dim);
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Input, "this index type (", im.opt.factory, ") cannot return its vectors for calibration: ", e.what());
  }
  auto lab = torch::empty({ns}, torch::kLong);
  for (int64_t i = 0; i < ns; ++i) lab[i] = labels[size_t(sample[i].item<int64_t>())];

  // 1:1 pair thresholds
  report_progress(progress, {"calibrate", 0, 2, "pairs"});
  auto pairs = identity::calibrate(vecs, lab, im.opt.fars, 20'000'000, im.opt.seed);

  // 1:N leave-identity-out searches
  const int k = int(std::min<int64_t>(n, std::min<int64_t>(max_per_id + 1, 4096)));
  std::vector<double> impostor_top, genuine_top;  // best other-identity score; best other-image score of same id
  std::vector<char> genuine_rank1;                // was the best other image the right identity?
  const int64_t block = 1024;
  for (int64_t s = 0; s < ns; s += block) {
    auto res = search(vecs.slice(0, s, std::min(ns, s + block)), k);
    for (size_t i = 0; i < res.size(); ++i) {
      const int64_t self = sample[s + int64_t(i)].item<int64_t>();
      const int64_t my = labels[size_t(self)];
      bool got_imp = false, got_first = false;
      for (const auto& m : res[i]) {
        if (m.id < 0 || m.id == self) continue;
        const bool same = labels[size_t(m.id)] == my;
        if (!got_first && count[my] >= 2) {
          got_first = true;
          genuine_top.push_back(m.similarity);
          genuine_rank1.push_back(same);
        }
        if (!same) {
          impostor_top.push_back(m.similarity);
          got_imp = true;
          break;
        }
      }
      (void)got_imp;  // all top-k of the own identity: no impostor score for this query
    }
    report_progress(progress, {"calibrate", 1, 2, "searches " + std::to_string(std::min(ns, s + block)) + "/" + std::to_string(ns)});
  }
  CalibrationReport rep;
  rep.genuine_pairs = pairs.genuine_pairs;
  rep.impostor_pairs = pairs.impostor_pairs;
  rep.impostor_queries = int64_t(impostor_top.size());
  rep.genuine_queries = int64_t(genuine_top.size());
  auto imp_t = torch::tensor(impostor_top, torch::kFloat64);
  for (size_t f = 0; f < im.opt.fars.size(); ++f) {
    Threshold t;
    t.far = im.opt.fars[f];
    t.pair = pairs.points[f].threshold;
    t.pair_tar = pairs.points[f].tar;
    if (!impostor_top.empty()) {
      t.search = std::max(t.pair, threshold_for_far(imp_t, t.far));
      t.search_resolved = double(impostor_top.size()) * t.far >= 1.0;
    } else {
      t.search = t.pair;
      t.search_resolved = false;
    }
    if (!genuine_top.empty()) {
      int64_t hit = 0;
      for (size_t i = 0; i < genuine_top.size(); ++i) hit += genuine_rank1[i] && genuine_top[i] > t.search;
      t.search_tpir = double(hit) / double(genuine_top.size());
    }
    rep.points.push_back(t);
  }
  report_progress(progress, {"calibrate", 2, 2, ""});
  im.calib = rep;
  im.calibrated = true;
  return im.calib;
}

std::string IdentityIndex::layout() const {
  const auto& im = *impl_;
  std::ostringstream os;
  os << im.opt.factory << ", " << size() << " vectors of " << im.dim << "-d";
  auto* ivf = faiss::ivflib::try_extract_index_ivf(im.index.get());
  if (!ivf) {
    os << ", in memory";
    return os.str();
  }
  std::vector<size_t> sizes(ivf->nlist);
  for (size_t l = 0; l < ivf->nlist; ++l) sizes[l] = ivf->invlists->list_size(l);
  std::sort(sizes.begin(), sizes.end());
  os << "; " << ivf->nlist << " lists (vectors per list: min " << (sizes.empty() ? 0 : sizes.front()) << ", median "
     << (sizes.empty() ? 0 : sizes[sizes.size() / 2]) << ", max " << (sizes.empty() ? 0 : sizes.back()) << "), "
     << ivf->code_size << " B a code + 8 B an id, nprobe " << ivf->nprobe;
  if (im.lists_path.empty()) {
    os << "; lists in memory";
  } else {
    std::error_code ec;
    os << "; lists on disk, memory-mapped: " << fs::path(im.lists_path).filename().string() << " ("
       << fs::file_size(im.lists_path, ec) << " bytes)";
  }
  return os.str();
}

const CalibrationReport& IdentityIndex::calibration() const {
  RW_CHECK(impl_->calibrated, Internal, "index has not been calibrated");
  return impl_->calib;
}

namespace {
const Threshold& pick(const CalibrationReport& c, double far) {
  RW_CHECK(!c.points.empty(), Input, "the index has no calibrated thresholds; rebuild it with rewind index build");
  RW_CHECK(far > 0 && far < 1, Usage, "--far must be a rate in (0, 1), got ", far);
  for (const auto& p : c.points)
    if (std::abs(std::log10(p.far) - std::log10(far)) < 1e-6) return p;
  // only calibrated points: a neighbour's threshold would be reported under a FAR it was not set at
  std::string have;
  for (const auto& p : c.points) {
    std::ostringstream os;
    os << p.far;
    have += (have.empty() ? "" : ", ") + os.str();
  }
  RW_FAIL(Usage, "FAR ", far, " was not calibrated for this index (calibrated: ", have,
          "); choose one of these, or rebuild the index with --fars including it");
}
}  // namespace

double IdentityIndex::search_threshold(double far) const { return pick(calibration(), far).search; }
double IdentityIndex::pair_threshold(double far) const { return pick(calibration(), far).pair; }

nlohmann::json IdentityIndex::manifest() const {
  const auto& im = *impl_;
  nlohmann::json j;
  j["format"] = "rewind-identity-index";
  j["format_version"] = kFormat;
  j["dim"] = im.dim;
  j["metric"] = im.opt.metric;
  j["factory"] = im.opt.factory;
  j["count"] = size();
  j["build_options"] = {{"hnsw_ef_search", im.opt.hnsw_ef_search},
                        {"hnsw_ef_construction", im.opt.hnsw_ef_construction},
                        {"ivf_nprobe", im.opt.ivf_nprobe},
                        {"calib_queries", im.opt.calib_queries},
                        {"seed", im.opt.seed}};
  j["similarity"] = "cosine (l2 indexes report 1 - d^2/2)";
  if (im.calibrated) {
    nlohmann::json c;
    c["genuine_pairs"] = im.calib.genuine_pairs;
    c["impostor_pairs"] = im.calib.impostor_pairs;
    c["impostor_queries"] = im.calib.impostor_queries;
    c["genuine_queries"] = im.calib.genuine_queries;
    c["thresholds"] = nlohmann::json::array();
    for (const auto& t : im.calib.points) {
      c["thresholds"].push_back({{"far", t.far},
                                 {"pair", t.pair},
                                 {"search", t.search},
                                 {"pair_tar", t.pair_tar},
                                 {"search_tpir", t.search_tpir},
                                 {"search_resolved", t.search_resolved}});
    }
    j["calibration"] = c;
  }
  j["created_utc"] = im.created_utc;
  j["build"] = build_string();
  if (im.generation >= 0) j["generation"] = im.generation;
  if (!im.files.is_null()) j["files"] = im.files;
  for (auto it = im.extra.begin(); it != im.extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

namespace {

using io::dump_json;  // JSON text for hashing and writing: invalid UTF-8 (a Latin-1 path) is replaced, never a throw

// The manifest's checksum: the hash of its compact text without the checksum field.
std::string manifest_checksum(nlohmann::json m) {
  m.erase("checksum");
  return io::content_hash(dump_json(m, -1));
}

bool plain_file_name(const std::string& n) {
  return !n.empty() && n.size() < 200 && n.find('/') == std::string::npos && n.find('\0') == std::string::npos &&
         n != "." && n != "..";
}

// The generation a folder holds now and the files it names (for the next save's switch).
struct Generation {
  int64_t number = -1;
  std::vector<std::string> files;
};
Generation current_generation(const std::string& dir) {
  Generation g;
  try {
    const auto m = nlohmann::json::parse(io::read_file(dir + "/manifest.json"));
    g.number = m.value("generation", int64_t(0));
    if (m.contains("files")) {
      for (const char* k : {"index", "items", "lists"})
        if (m.at("files").contains(k)) g.files.push_back(m.at("files").at(k).at("name").get<std::string>());
    } else {
      g.files = {"index.faiss", "items.csv"};
    }
  } catch (const std::exception&) {
    return {};  // no (readable) manifest: nothing to keep
  }
  return g;
}

faiss::OnDiskInvertedLists* on_disk_lists(faiss::Index* index) {
  auto* ivf = faiss::ivflib::try_extract_index_ivf(index);
  return ivf ? dynamic_cast<faiss::OnDiskInvertedLists*>(ivf->invlists) : nullptr;
}

}  // namespace

std::string generation_file(const char* stem, const char* ext, int64_t gen) {
  return gen == 0 ? std::string(stem) + ext : std::string(stem) + ".g" + std::to_string(gen) + ext;
}

int64_t current_generation_number(const std::string& dir) { return current_generation(dir).number; }

void IdentityIndex::save(const std::string& dir, const nlohmann::json& extra) const {
  io::ensure_dir(dir);
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) impl_->extra[it.key()] = it.value();
  // Crash consistency: the new generation's files get new names, and manifest.json, which names
  // them, is switched last with one atomic rename. A kill at any instant leaves the old manifest
  // with its old files, or the new one with its new files; the old files are removed after.
  const Generation old = current_generation(dir);
  const int64_t gen = old.number + 1;
  const std::string iname = generation_file("index", ".faiss", gen), cname = generation_file("items", ".csv", gen);
  // on-disk lists were written where the merge put them: this folder, under this generation's name
  auto* od = on_disk_lists(impl_->index.get());
  const std::string lname = od ? generation_file("lists", ".ivfdata", gen) : std::string();
  if (od) {
    std::error_code ec;
    RW_CHECK(fs::equivalent(impl_->lists_path, dir + "/" + lname, ec), Usage, "an index whose lists are on disk (",
             impl_->lists_path, ") is saved only into the folder it was merged for, as ", dir, "/", lname);
  }
  // an on-disk index takes no appends and is not calibrated again: its direct map (8 B a vector
  // in every query process's RAM) is dropped
  if (od) faiss::ivflib::extract_index_ivf(impl_->index.get())->set_direct_map_type(faiss::DirectMap::NoMap);
  {
    // the file records the lists' bare name (load finds them beside index.faiss); the mapping keeps its path
    const std::string full = od ? od->filename : std::string();
    if (od) od->filename = lname;
    try {
      write_index_atomic(impl_->index.get(), dir + "/" + iname);
    } catch (...) {
      if (od) od->filename = full;
      throw;
    }
    if (od) od->filename = full;
  }
  io::crash_point("index-save:index-written");
  const std::string& items = impl_->items.text();
  io::write_file_atomic(dir + "/" + cname, items);
  io::crash_point("index-save:items-written");
  int64_t ibytes = 0;
  const std::string ihash = io::file_content_hash(dir + "/" + iname, &ibytes);
  impl_->files = {{"index", {{"name", iname}, {"bytes", ibytes}, {"fnv1a64", ihash}}},
                  {"items", {{"name", cname}, {"bytes", int64_t(items.size())}, {"fnv1a64", io::content_hash(items)}}}};
  if (od) {
    int64_t lbytes = 0;
    const std::string lhash = io::file_content_hash(dir + "/" + lname, &lbytes);
    impl_->files["lists"] = {{"name", lname}, {"bytes", lbytes}, {"fnv1a64", lhash}};
  }
  impl_->generation = gen;
  auto m = manifest();
  m["checksum"] = manifest_checksum(m);
  io::write_file_atomic(dir + "/manifest.json", dump_json(m, 2) + "\n");
  io::crash_point("index-save:manifest-switched");
  std::error_code ec;
  for (const auto& f : old.files)
    if (f != iname && f != cname && f != lname && plain_file_name(f)) fs::remove(dir + "/" + f, ec);
}

namespace {

// The metric as an int: a damaged file can hold a value outside the enum (UB to load as MetricType;
// found by fuzz_index under UBSan).
int raw_metric(const faiss::Index* index) {
  int raw = 0;
  static_assert(sizeof(raw) == sizeof(index->metric_type), "MetricType is an int");
  std::memcpy(&raw, &index->metric_type, sizeof raw);
  return raw;
}

// The lists' table of an on-disk index, checked against the file's size before it is mapped:
// a damaged offset or size would otherwise be followed outside the mapping.
void validate_on_disk_lists(const faiss::OnDiskInvertedLists& od, const std::string& ipath) {
  auto bad = [&](const std::string& what) {
    RW_FAIL(Input, ipath, " is damaged (", what, "); restore it from a backup or rebuild it with rewind index build");
  };
  if (od.lists.size() != od.nlist) bad("its on-disk list table has the wrong size");
  const size_t entry = od.code_size + sizeof(idx_t);
  for (const auto& l : od.lists) {
    if (l.size > l.capacity || l.capacity > od.totsize / std::max<size_t>(entry, 1) || l.offset > od.totsize ||
        l.capacity * entry > od.totsize - l.offset)
      bad("an on-disk list outside its lists file");
  }
}

// Structural checks of a FAISS index read from disk, before anything searches it: a damaged
// graph or list would otherwise be followed out of bounds (a crash) or return garbage.
void validate_index(const faiss::Index* index, const std::string& ipath, const std::string& factory,
                    const std::string& metric) {
  auto bad = [&](const std::string& what) {
    RW_FAIL(Input, ipath, " is damaged (", what, "); restore it from a backup or rebuild it with rewind index build");
  };
  const int64_t n = index->ntotal;
  if (n < 0) bad("negative vector count");
  if (raw_metric(index) != int(metric_of(metric))) bad("its metric is not the manifest's " + metric);
  // the manifest's factory names the type: Flat, HNSW.., IVF.., PQ..
  const std::string head = factory.substr(0, factory.find(','));
  auto starts = [&](const char* p) { return head.rfind(p, 0) == 0; };
  if (head == "Flat" && !dynamic_cast<const faiss::IndexFlat*>(index)) bad("the manifest says Flat but the file is another type");
  if (starts("HNSW") && !dynamic_cast<const faiss::IndexHNSW*>(index)) bad("the manifest says " + head + " but the file is not an HNSW index");
  if (starts("IVF") && !dynamic_cast<const faiss::IndexIVF*>(index)) bad("the manifest says " + head + " but the file is not an IVF index");
  if (starts("PQ") && !dynamic_cast<const faiss::IndexPQ*>(index)) bad("the manifest says " + head + " but the file is not a PQ index");

  if (auto* fc = dynamic_cast<const faiss::IndexFlatCodes*>(index)) {
    if (fc->codes.size() != size_t(n) * fc->code_size) bad("its code array does not hold ntotal vectors");
  }
  if (auto* pq = dynamic_cast<const faiss::IndexPQ*>(index)) {
    const auto& q = pq->pq;
    if (q.M == 0 || q.nbits == 0 || q.nbits > 16 || q.centroids.size() != q.M * q.ksub * q.dsub) bad("inconsistent PQ tables");
  }
  if (auto* h = dynamic_cast<const faiss::IndexHNSW*>(index)) {
    const auto& g = h->hnsw;
    if (!h->storage || h->storage->ntotal != n || h->storage->d != index->d) bad("its HNSW storage does not match the graph");
    validate_index(h->storage, ipath, "", metric);
    const auto& cum = g.cum_nneighbor_per_level;
    if (g.levels.size() != size_t(n) || g.offsets.size() != size_t(n) + 1 || (n > 0 && g.offsets[0] != 0) ||
        cum.empty() || cum[0] != 0)
      bad("HNSW level tables of the wrong size");
    if (n > 0 && (g.entry_point < 0 || g.entry_point >= n)) bad("HNSW entry point out of range");
    if (n > 0 && (g.max_level < 0 || size_t(g.max_level) + 1 >= cum.size() || g.levels[g.entry_point] != g.max_level + 1))
      bad("HNSW top level inconsistent with its entry point");
    for (int64_t i = 0; i < n; ++i) {
      const int lv = g.levels[i];
      if (lv < 1 || size_t(lv) >= cum.size() || lv > g.max_level + 1) bad("HNSW node level out of range");
      if (g.offsets[i + 1] < g.offsets[i] || g.offsets[i + 1] - g.offsets[i] != size_t(cum[lv])) bad("HNSW neighbour offsets inconsistent");
    }
    if (n > 0 && g.offsets[n] != g.neighbors.size()) bad("HNSW neighbour table of the wrong size");
    for (int64_t i = 0; i < n; ++i)
      for (int l = 0; l < g.levels[i]; ++l)
        for (size_t k = g.offsets[i] + cum[l]; k < g.offsets[i] + cum[l + 1]; ++k) {
          const auto j = g.neighbors[k];
          if (j < -1 || j >= n) bad("HNSW neighbour id out of range");
          if (j >= 0 && g.levels[j] <= l) bad("HNSW neighbour on a level it does not reach");
        }
  }
  if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index)) {
    if (!ivf->quantizer || ivf->quantizer->ntotal != int64_t(ivf->nlist) || ivf->quantizer->d != index->d)
      bad("its IVF coarse quantizer does not match the list count");
    const int qm = raw_metric(ivf->quantizer);
    if (qm != faiss::METRIC_L2 && qm != faiss::METRIC_INNER_PRODUCT) bad("its coarse quantizer has an unknown metric");
    validate_index(ivf->quantizer, ipath, "", qm == faiss::METRIC_L2 ? "l2" : "cosine");
    const auto* il = ivf->invlists;
    if (!il || il->nlist != ivf->nlist || il->code_size != ivf->code_size) bad("its inverted lists do not match the index");
    int64_t total = 0;
    for (size_t l = 0; l < il->nlist; ++l) {
      const size_t sz = il->list_size(l);
      total += int64_t(sz);
      if (total > n) bad("its inverted lists hold more vectors than ntotal");
      faiss::InvertedLists::ScopedIds ids(il, l);
      const auto* raw = reinterpret_cast<const char*>(ids.get());  // mapped lists may be misaligned
      for (size_t k = 0; k < sz; ++k) {
        faiss::Index::idx_t id;
        std::memcpy(&id, raw + k * sizeof id, sizeof id);
        if (id < 0 || id >= n) bad("an inverted-list id out of range");
      }
    }
    if (total != n) bad("its inverted lists hold fewer vectors than ntotal");
    const auto& dm = ivf->direct_map;
    if (dm.type == faiss::DirectMap::Array) {
      if (dm.array.size() != size_t(n)) bad("its direct map has the wrong size");
      for (auto v : dm.array) {
        if (v < 0) bad("a direct-map entry out of range");
        const uint64_t list = faiss::lo_listno(uint64_t(v)), off = faiss::lo_offset(uint64_t(v));
        if (list >= il->nlist || off >= il->list_size(list)) bad("a direct-map entry out of range");
      }
    }
  }
}

}  // namespace

IdentityIndex IdentityIndex::load(const std::string& dir, bool verify) {
  const std::string mpath = dir + "/manifest.json";
  RW_CHECK(fs::is_directory(dir), Input, "index folder ", dir, " does not exist; build one with rewind index build --out ", dir);
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(io::read_file(mpath));
  } catch (const nlohmann::json::exception& e) {
    RW_FAIL(Input, mpath, " is not valid JSON (", e.what(), "); rebuild the index with rewind index build");
  }
  RW_CHECK(m.is_object() && m.value("format", "") == "rewind-identity-index", Input, mpath,
           " is not a rewind index manifest; rebuild the index with rewind index build");
  // integrity: the manifest's own checksum, then each file's size and content hash, all before
  // FAISS parses a byte
  std::string iname = "index.faiss", cname = "items.csv", integrity = "legacy", lname, lpath;
  nlohmann::json files;
  int64_t generation = 0;
  if (m.contains("checksum")) {
    RW_CHECK(m["checksum"].is_string() && m["checksum"].get<std::string>() == manifest_checksum(m), Input,
             mpath, " was changed after rewind wrote it (its checksum does not match): restore the folder from a backup or "
             "rebuild the index with rewind index build");
    try {
      files = m.at("files");
      iname = files.at("index").at("name").get<std::string>();
      cname = files.at("items").at("name").get<std::string>();
      generation = m.at("generation").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      RW_FAIL(Input, mpath, " names no files (", e.what(), "); rebuild the index with rewind index build");
    }
    RW_CHECK(plain_file_name(iname) && plain_file_name(cname), Input, mpath, " names files outside its folder (",
             iname, ", ", cname, "); rebuild the index");
    integrity = verify ? "verified" : "sizes only (hash check skipped)";
  } else {
    // a manifest of this format without its checksum is damaged, not legacy (a flipped byte in
    // the key must not switch the checks off)
    RW_CHECK(!m.contains("files") && !m.contains("generation"), Input, mpath,
             " has lost its checksum (damaged); restore the folder from a backup or rebuild the index");
    log_warn(mpath, " has no content hashes (written by an older rewind): damage to the index cannot be detected; "
             "rebuild it with rewind index build to add them");
  }
  const std::string ipath = dir + "/" + iname, cpath = dir + "/" + cname;
  RW_CHECK(fs::is_regular_file(ipath), Input, ipath, " is missing; restore it or rebuild the index with rewind index build");
  RW_CHECK(fs::is_regular_file(cpath), Input, cpath, " is missing; restore it or rebuild the index with rewind index build");
  std::string items_text = io::read_file(cpath);
  if (!files.is_null()) {
    auto check = [&](const char* key, const std::string& path, int64_t size, const std::function<std::string()>& hash) {
      const auto& f = files.at(key);
      RW_CHECK(f.is_object() && f.contains("bytes") && f["bytes"].is_number_integer() && f.contains("fnv1a64") &&
                   f["fnv1a64"].is_string(), Input, mpath, " has a malformed files entry for ", key, "; rebuild the index");
      const int64_t want = f["bytes"].get<int64_t>();
      RW_CHECK(size == want, Input, path, " is ", size, " bytes but ", mpath, " recorded ", want,
               ": the file was truncated or replaced; restore it or rebuild the index");
      RW_CHECK(!verify || hash() == f["fnv1a64"].get<std::string>(), Input, path, " does not match the content hash in ", mpath,
               " (the file is damaged); restore it from a backup or rebuild the index with rewind index build");
    };
    check("items", cpath, int64_t(items_text.size()), [&] { return io::content_hash(items_text); });
    check("index", ipath, int64_t(fs::file_size(ipath)), [&] { return io::file_content_hash(ipath); });
    if (files.contains("lists")) {
      try {
        lname = files.at("lists").at("name").get<std::string>();
      } catch (const nlohmann::json::exception& e) {
        RW_FAIL(Input, mpath, " has a malformed lists entry (", e.what(), "); rebuild the index");
      }
      RW_CHECK(plain_file_name(lname), Input, mpath, " names a lists file outside its folder (", lname, "); rebuild the index");
      lpath = dir + "/" + lname;
      RW_CHECK(fs::is_regular_file(lpath), Input, lpath, " (the index's inverted lists) is missing; restore it or rebuild "
               "the index with rewind index build");
      check("lists", lpath, int64_t(fs::file_size(lpath)), [&] { return io::file_content_hash(lpath); });
    }
  }
  IdentityIndex idx;
  auto& im = *idx.impl_;
  try {
    im.dim = m.at("dim").get<int64_t>();
    im.opt.metric = m.at("metric").get<std::string>();
    im.opt.factory = m.at("factory").get<std::string>();
    const auto& b = m.at("build_options");
    im.opt.hnsw_ef_search = b.value("hnsw_ef_search", im.opt.hnsw_ef_search);
    im.opt.hnsw_ef_construction = b.value("hnsw_ef_construction", im.opt.hnsw_ef_construction);
    im.opt.ivf_nprobe = b.value("ivf_nprobe", im.opt.ivf_nprobe);
    im.opt.calib_queries = b.value("calib_queries", im.opt.calib_queries);
    im.opt.seed = b.value("seed", im.opt.seed);
    im.created_utc = m.value("created_utc", "");
    if (m.contains("calibration")) {
      const auto& c = m["calibration"];
      im.calib.genuine_pairs = c.value("genuine_pairs", int64_t(0));
      im.calib.impostor_pairs = c.value("impostor_pairs", int64_t(0));
      im.calib.impostor_queries = c.value("impostor_queries", int64_t(0));
      im.calib.genuine_queries = c.value("genuine_queries", int64_t(0));
      im.opt.fars.clear();
      for (const auto& t : c.at("thresholds")) {
        Threshold th;
        th.far = t.at("far").get<double>();
        th.pair = t.at("pair").get<double>();
        th.search = t.at("search").get<double>();
        th.pair_tar = t.value("pair_tar", -1.0);
        th.search_tpir = t.value("search_tpir", -1.0);
        th.search_resolved = t.value("search_resolved", true);
        im.calib.points.push_back(th);
        im.opt.fars.push_back(th.far);
      }
      im.calibrated = true;
    }
  } catch (const nlohmann::json::exception& e) {
    RW_FAIL(Input, mpath, " is missing a field (", e.what(), "); rebuild the index with rewind index build");
  }
  static const std::vector<std::string> known = {"format", "format_version", "dim", "metric", "factory", "count",
                                                 "build_options", "similarity", "calibration", "created_utc", "build",
                                                 "generation", "files", "checksum"};
  for (auto it = m.begin(); it != m.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) im.extra[it.key()] = it.value();

  try {
    // on-disk lists: FAISS reads the lists' table, rewind maps the file the manifest names
    im.index.reset(faiss::read_index(ipath.c_str(), lpath.empty() ? 0 : faiss::IO_FLAG_SKIP_IVF_DATA | faiss::IO_FLAG_READ_ONLY));
    if (!lpath.empty()) {
      auto* od = on_disk_lists(im.index.get());
      RW_CHECK(od, Input, mpath, " names a lists file but ", ipath, " keeps no lists on disk; rebuild the index");
      RW_CHECK(od->totsize == size_t(fs::file_size(lpath)), Input, lpath, " is ", fs::file_size(lpath), " bytes but ", ipath,
               " expects ", od->totsize, "; restore the folder or rebuild the index");
      validate_on_disk_lists(*od, ipath);  // before a byte of the mapped file is read
      od->filename = lpath;
      if (od->totsize > 0) od->do_mmap();
      im.lists_path = lpath;
    }
  } catch (const faiss::FaissException& e) {
    RW_FAIL(Input, ipath, " is not a readable FAISS index (truncated or foreign file); rebuild it with rewind index build. FAISS said: ",
            e.what());
  } catch (const std::exception& e) {  // bad_alloc / length_error from a damaged size field
    RW_FAIL(Input, ipath, " is not a readable FAISS index (a size field is damaged: ", e.what(),
            "); restore it or rebuild it with rewind index build");
  }
  RW_CHECK(im.index && im.index->d == im.dim, Input, ipath, " holds ", im.index ? im.index->d : 0, "-d vectors but ", mpath,
           " says ", im.dim, "; the folder mixes two indexes: rebuild it");
  validate_index(im.index.get(), ipath, im.opt.factory, im.opt.metric);
  RW_CHECK(!m.contains("count") || m["count"] == int64_t(im.index->ntotal), Input, mpath, " records ", m["count"].dump(),
           " vectors but ", ipath, " holds ", im.index->ntotal, "; the folder mixes two generations: restore or rebuild it");
  im.generation = generation;
  im.files = files;
  im.integrity = integrity;
  im.items = ItemTable::parse(std::move(items_text), cpath);
  RW_CHECK(int64_t(im.items.size()) == int64_t(im.index->ntotal), Input, cpath, " lists ", im.items.size(),
           " items but the index holds ", im.index->ntotal, " vectors; rebuild the index");
  im.apply_search_params();
  return idx;
}

}  // namespace rw::identity
