// rewind index build | query | info
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "cli.h"
#include "rewind/core/build_info.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/data/datasets.h"
#include "rewind/identity/index.h"
#include "rewind/identity/ivf_shards.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/npy.h"
#include "rewind/io/run_record.h"
#include "rewind/dist/dist.h"
#include "rewind/models/native.h"
#include "rewind/report/html.h"

namespace rw::cli {
namespace {

namespace fs = std::filesystem;

std::vector<double> parse_fars(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    try {
      size_t used = 0;
      double v = std::stod(tok, &used);
      RW_CHECK(used == tok.size() && v > 0 && v < 1, Usage, "--fars: '", tok, "' is not a rate in (0, 1)");
      out.push_back(v);
    } catch (const std::logic_error&) {
      RW_FAIL(Usage, "--fars: '", tok, "' is not a number (example: --fars 1e-2,1e-3,1e-4)");
    }
  }
  RW_CHECK(!out.empty(), Usage, "--fars needs at least one rate (example: 1e-2,1e-3,1e-4)");
  return out;
}

std::string fars_string(const std::vector<double>& f) {
  std::ostringstream os;
  for (size_t i = 0; i < f.size(); ++i) os << (i ? "," : "") << f[i];
  return os.str();
}

nlohmann::json embedder_record(const models::Embedder& e, const std::string& path) {
  std::error_code ec;
  auto abs = fs::absolute(path, ec).lexically_normal().string();
  return {{"id", e.id()}, {"path", abs}, {"file_hash", models::file_hash(path)}, {"dim", e.dim()}, {"describe", e.describe()}};
}

void print_calibration(std::ostream& os, const identity::CalibrationReport& c) {
  os << "calibration: " << c.impostor_pairs << " impostor / " << c.genuine_pairs << " genuine pairs; "
     << c.impostor_queries << " impostor / " << c.genuine_queries << " genuine leave-out searches\n";
  os << "  FAR       pair thr  TAR     search thr  rank-1 TPIR\n";
  for (const auto& t : c.points) {
    os << "  " << std::left << std::setw(9) << t.far << " " << std::fixed << std::setprecision(4) << std::setw(9)
       << t.pair << " " << std::setw(7) << (t.pair_tar < 0 ? std::string("n/a") : report::fmt(t.pair_tar)) << " "
       << std::setw(11) << t.search << " " << (t.search_tpir < 0 ? std::string("n/a") : report::fmt(t.search_tpir))
       << (t.search_resolved ? "" : "  (too few impostor searches to resolve this FAR: threshold = their maximum)")
       << "\n";
    os.unsetf(std::ios::fixed);
  }
}

// ------------------------------------------------------------------------------------------------
// index build

/// Flags of `index build`.
struct BuildFlags {
  identity::IndexOptions index;
  std::string data, embedder, out, crop = "auto", fars = fars_string(index.fars), dataset, recipe;
  int64_t batch = 128;
  int64_t train_sample = 0;
  bool append = false, on_disk = false, train_only = false;
  std::string data_hash;  ///< data_rows_hash(data), for sharded and trained builds
};

void add_build_flags(po::options_description& desc, BuildFlags& f) {
  auto& o = f.index;
  desc.add_options()
      ("data", po::value(&f.data)->required(), "candidate images: manifest, folder with manifest.csv, or image folder")
      ("embedder", po::value(&f.embedder)->required(), "identity embedder (native or TorchScript)")
      ("out", po::value(&f.out)->required(), "index folder (e.g. indexes/NAME): index.faiss, items.csv, manifest.json")
      ("recipe", po::value(&f.recipe),
       "index recipe (indexes/exact.json, hnsw.json, ivfpq.json): sets factory, metric, fars, ef-search, "
       "ef-construction, nprobe, calib-queries; flags given explicitly override it")
      ("factory", opt(&o.factory), "FAISS index_factory string: Flat (exact), HNSW32 (fast, large sets), IVF4096,PQ32 (millions, compressed)")
      ("metric", opt(&o.metric), "cosine (inner product on normalised vectors) | l2")
      ("fars", opt(&f.fars), "false-accept rates to calibrate thresholds for")
      ("ef-search", opt(&o.hnsw_ef_search), "HNSW search breadth (higher: better recall, slower)")
      ("ef-construction", opt(&o.hnsw_ef_construction), "HNSW build breadth")
      ("nprobe", opt(&o.ivf_nprobe), "IVF lists visited per query")
      ("calib-queries", opt(&o.calib_queries), "at most this many leave-identity-out searches for thresholds")
      ("crop", opt(&f.crop), kCropHelp)
      ("embed-batch", opt(&f.batch), "images per embedder pass")
      ("dataset", po::value(&f.dataset), "dataset name for items.csv (default: the manifest's folder name)")
      ("append", po::bool_switch(&f.append), "add the images to an existing index (same embedder); ids stay stable")
      ("on-disk", po::bool_switch(&f.on_disk),
       "IVF factories: keep the inverted lists in OUT/lists.ivfdata, memory-mapped by queries (indexes larger "
       "than RAM); the quantizer is trained once on a sample (--train-only), shards add to it")
      ("train-sample", opt(&f.train_sample), "IVF: vectors to train the quantizer on, rows drawn by --seed (0: 64 a list)")
      ("train-only", po::bool_switch(&f.train_only),
       "IVF: embed the training sample, train, write OUT/trained.faiss and stop; then run the shards")
      ("seed", opt(&o.seed), "calibration sampling seed");
}

/// The flags given on the command line (not defaulted), to let them override a recipe.
std::set<std::string> given_flags(const Args& args, const po::options_description& desc) {
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).allow_unregistered().run(), vm);
  std::set<std::string> given;
  for (const auto& [name, value] : vm)
    if (!value.defaulted()) given.insert(name);
  return given;
}

/// Reads a recipe into `o`, except the fields whose flag is in `given` (explicit flags win). Every
/// key is checked, used or not. Returns the recipe's content.
nlohmann::json apply_recipe(const std::string& path, const std::set<std::string>& given, identity::IndexOptions& o,
                            nlohmann::json& extra_flags) {
  std::ifstream in(path);
  RW_CHECK(in.good(), Input, "recipe ", path, " cannot be read; the shipped recipes are in indexes/");
  nlohmann::json r = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  RW_CHECK(!r.is_discarded(), Input, "recipe ", path, " is not valid JSON (see indexes/README.md)");
  RW_CHECK(r.is_object(), Input, "recipe ", path, " is not a JSON object of recipe fields (see indexes/README.md)");
  auto str = [&](const std::string& key, const nlohmann::json& v) {
    RW_CHECK(v.is_string(), Input, "recipe ", path, ": '", key, "' must be a string, got ", v.dump());
    return v.get<std::string>();
  };
  auto count = [&](const std::string& key, const nlohmann::json& v) {
    RW_CHECK(v.is_number_integer() && v.get<int64_t>() > 0 && v.get<int64_t>() <= INT32_MAX, Input, "recipe ", path,
             ": '", key, "' must be a positive integer, got ", v.dump());
    return v.get<int64_t>();
  };
  auto rates = [&](const std::string& key, const nlohmann::json& v) {
    std::vector<double> out;
    for (const auto& x : v.is_array() ? v : nlohmann::json::array()) {
      RW_CHECK(x.is_number() && x.get<double>() > 0 && x.get<double>() < 1, Input, "recipe ", path, ": '", key,
               "' holds ", x.dump(), ", not a rate in (0, 1)");
      out.push_back(x.get<double>());
    }
    RW_CHECK(!out.empty(), Input, "recipe ", path, ": '", key, "' must be a non-empty array of rates, got ", v.dump());
    return out;
  };
  for (const auto& [key, v] : r.items()) {
    std::string flag = key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    const bool use = given.count(flag) == 0;
    if (key == "factory") { auto x = str(key, v); if (use) o.factory = x; }
    else if (key == "metric") { auto x = str(key, v); if (use) o.metric = x; }
    else if (key == "fars") { auto x = rates(key, v); if (use) o.fars = x; }
    else if (key == "ef_search") { auto x = count(key, v); if (use) o.hnsw_ef_search = int(x); }
    else if (key == "ef_construction") { auto x = count(key, v); if (use) o.hnsw_ef_construction = int(x); }
    else if (key == "nprobe") { auto x = count(key, v); if (use) o.ivf_nprobe = int(x); }
    else if (key == "calib_queries") { auto x = count(key, v); if (use) o.calib_queries = x; }
    else if (key == "on_disk") {
      RW_CHECK(v.is_boolean(), Input, "recipe ", path, ": 'on_disk' must be true or false, got ", v.dump());
      if (use && v.get<bool>()) extra_flags["on_disk"] = true;
    } else if (key == "train_sample") { auto x = count(key, v); if (use) extra_flags["train_sample"] = x; }
    else if (key == "suits") str(key, v);
    else RW_FAIL(Input, "recipe ", path, ": unknown key '", key,
                 "' (known: factory, metric, fars, ef_search, ef_construction, nprobe, calib_queries, on_disk, "
                 "train_sample, suits)");
  }
  return r;
}

/// The existing index (--append, checked to use the same embedder) or a new one.
std::unique_ptr<identity::IdentityIndex> open_index(const BuildFlags& f, const models::Embedder& e) {
  const auto& out = f.out;
  if (!f.append) {
    RW_CHECK(!fs::exists(out + "/manifest.json") && !fs::exists(out + "/index.faiss"), Usage, out,
             " already holds an index: pass --append to add to it, "
             "or choose another --out (or delete the folder)");
    return std::make_unique<identity::IdentityIndex>(e.dim(), f.index);
  }
  RW_CHECK(fs::exists(out + "/manifest.json"), Usage, "--append: ", out, " holds no index yet; build it first without --append");
  auto idx = std::make_unique<identity::IdentityIndex>(identity::IdentityIndex::load(out));
  auto m = idx->manifest();
  RW_CHECK(m.contains("embedder") && m["embedder"].value("id", "") == e.id(), Input, "--append: ", f.embedder,
           " (", e.id(), ") is not the embedder ", out, " was built with (",
           m.contains("embedder") ? m["embedder"].value("id", "?") : "?",
           "); append with that embedder or build a new index");
  return idx;
}

/// The candidates' embeddings and items (rows that loaded, in manifest order).
struct Candidates {
  at::Tensor embeddings;              ///< [n, d]
  std::vector<identity::Item> items;
  std::vector<size_t> rows;           ///< manifest row of each
};

std::string dataset_name(const BuildFlags& f, const io::Manifest& m) {
  if (!f.dataset.empty()) return f.dataset;
  auto base = fs::path(m.base_dir).lexically_normal();
  return base.filename().empty() ? base.parent_path().filename().string() : base.filename().string();
}

Candidates embed_candidates(const BuildFlags& f, models::Embedder& e, io::RunRecord& record, const dist::Shard& shard) {
  auto m = data::open_data(f.data);
  const std::string dataset = dataset_name(f, m);
  log_info("embedding ", m.entries.size(), " images of ", f.data, " with ", e.describe(),
           shard.whole() ? std::string() : " (shard " + shard.str() + ")");
  auto emb = embed_manifest(e, m, f.crop, f.batch, &record, "embed", shard.blocks_of(f.batch));
  Candidates c;
  c.embeddings = emb.embeddings;
  c.rows = emb.rows;
  for (size_t r : emb.rows) {
    std::error_code ec;
    c.items.push_back({m.entries[r].identity, fs::absolute(m.resolve(r), ec).lexically_normal().string(), dataset});
  }
  record.mark("embed");
  return c;
}

/// Calibrates and saves `idx` with `extra` (embedder, recipe, sources) merged into its manifest.
identity::CalibrationReport finish_index(const BuildFlags& f, nlohmann::json extra, io::RunRecord& record,
                                         identity::IdentityIndex& idx, size_t added, const std::string& dataset) {
  auto calib = idx.calibrate(progress_fn());
  progress_done();
  record.mark("calibrate");
  auto prev = idx.manifest();
  nlohmann::json sources = prev.contains("sources") ? prev["sources"] : nlohmann::json::array();
  sources.push_back({{"data", f.data}, {"dataset", dataset}, {"added", added},
                     {"skipped", record.skipped()}, {"crop", f.crop}, {"at", io::utc_now_iso()}});
  extra["sources"] = sources;
  idx.save(f.out, extra);
  record.results()["added"] = added;
  record.results()["count"] = idx.size();
  record.results()["layout"] = idx.layout();
  record.results()["manifest"] = idx.manifest();
  return calib;
}

/// Adds the candidates, calibrates and saves the index with `extra` (embedder, recipe, sources)
/// merged into its manifest. Returns the calibration.
identity::CalibrationReport index_candidates(const BuildFlags& f, nlohmann::json extra, io::RunRecord& record,
                                             const models::Embedder& e, Candidates c) {
  RW_CHECK(!c.items.empty(), Input, "no image of ", f.data, " could be embedded; see ", f.out, "/run.json for the reasons");
  auto idx = open_index(f, e);
  const size_t added = c.items.size();
  const std::string dataset = c.items[0].dataset;
  idx->add(c.embeddings, c.items, progress_fn());
  progress_done();
  c = Candidates();  // the index holds its own copy: keep memory at one copy
  record.mark("index");
  return finish_index(f, extra, record, *idx, added, dataset);
}

/// items.csv of a part: the candidates with their manifest row.
void write_part_items(const std::string& dir, const Candidates& c) {
  std::string items = io::csv_line({"identity", "path", "dataset", "source_row"});
  for (size_t i = 0; i < c.items.size(); ++i)
    items += io::csv_line({c.items[i].identity, c.items[i].path, c.items[i].dataset, std::to_string(c.rows[i])});
  io::write_file_atomic(dir + "/items.csv", items);
}

/// A shard of a build: its candidates' embeddings (candidates.npy) and items (items.csv with the
/// manifest row), for the merge to index.
void build_part(const BuildFlags& f, io::RunRecord& record, const std::string& dir, const dist::Shard& shard) {
  io::ensure_dir(dir);
  run_and_record(record, dir + "/run.json", [&] {
    auto e = models::load_embedder(f.embedder);
    auto c = embed_candidates(f, *e, record, shard);
    io::write_npy(dir + "/candidates.npy", c.items.empty() ? torch::zeros({0, e->dim()}) : c.embeddings);
    write_part_items(dir, c);
    record_part_files(record, dir, {"candidates.npy", "items.csv"});
    record.results()["added"] = c.items.size();
    record.results()["embedder_id"] = e->id();
  });
}

/// Error{kInput} unless `p` was embedded with `e` (the same file).
void check_part_embedder(const dist::Part& p, const models::Embedder& e) {
  RW_CHECK(p.record["results"].value("embedder_id", "") == e.id(), Input, "--merge: ", p.dir,
           " was embedded with another embedder file (", p.record["results"].value("embedder_id", "?"), ", here ", e.id(),
           "); rerun that shard");
}

/// The parts' candidates in manifest order, as one process would have embedded them.
Candidates merged_candidates(const std::vector<dist::Part>& parts, const models::Embedder& e) {
  io::CsvRow header;
  auto merged = merge_csv_by(parts, "items.csv", "source_row", &header);
  std::vector<at::Tensor> embs, rows;
  for (const auto& p : parts) {
    check_part_embedder(p, e);
    embs.push_back(io::read_npy(p.dir + "/candidates.npy"));
  }
  Candidates c;
  for (size_t i = 0; i < merged.rows.size(); ++i) {
    const auto [k, r] = merged.from[i];
    RW_CHECK(embs[k].dim() == 2 && int64_t(r) < embs[k].size(0), Input, "--merge: ", parts[k].dir,
             "/candidates.npy has fewer rows than its items.csv; rerun shard ", parts[k].shard.str());
    rows.push_back(embs[k][int64_t(r)]);
    const auto& cells = merged.rows[i];
    c.items.push_back({cells[0], cells[1], cells[2]});
    c.rows.push_back(size_t(std::stoll(cells[3])));
  }
  if (!rows.empty()) c.embeddings = torch::stack(rows);
  return c;
}

// ------------------------------------------------------------------------------------------------
// IVF in shards: the quantizer trained once (OUT/trained.faiss), each shard adds its vectors under
// their manifest rows, the merge joins the lists in row order (on disk with --on-disk)

std::string trained_path(const BuildFlags& f) { return f.out + "/trained.faiss"; }

/// What trained.faiss must have been made with for this build to add to it.
nlohmann::json train_key(const BuildFlags& f, const models::Embedder& e) {
  return {{"factory", f.index.factory}, {"metric", f.index.metric}, {"seed", f.index.seed}, {"train_sample", f.train_sample},
          {"data", f.data}, {"data_rows_hash", f.data_hash}, {"crop", f.crop}, {"embedder_id", e.id()}};
}

/// Checks OUT/trained.faiss against its trained.json and this build; returns its content hash.
std::string check_trained(const BuildFlags& f, const models::Embedder& e) {
  const std::string t = trained_path(f), j = f.out + "/trained.json";
  RW_CHECK(fs::exists(t), Usage, t, " is missing: IVF shards add to one trained index. Run the same command once with "
           "--train-only (no --shard), then the shards");
  nlohmann::json rec;
  try {
    rec = nlohmann::json::parse(io::read_file(j));
  } catch (const nlohmann::json::exception& ex) {
    RW_FAIL(Input, j, " is not valid JSON (", ex.what(), "); delete ", t, " and ", j, ", then run --train-only again");
  }
  const auto have = rec.value("key", nlohmann::json::object()), want = train_key(f, e);
  for (const auto& [k, v] : want.items())
    RW_CHECK(have.value(k, nlohmann::json()) == v, Input, t, " was trained with other options (", k, " was ",
             have.value(k, nlohmann::json()).dump(), ", here ", v.dump(), "): delete it and trained.json and run "
             "--train-only again, or use another --out");
  const std::string h = io::file_content_hash(t);
  RW_CHECK(h == rec.value("fnv1a64", ""), Input, t, " does not match the hash in ", j,
           " (damaged or replaced): delete both and run --train-only again");
  return h;
}

/// Embeds the training sample (rows drawn by --seed), trains, writes trained.faiss + trained.json.
void train_ivf(const BuildFlags& f, io::RunRecord& record) {
  auto e = models::load_embedder(f.embedder);
  auto m = data::open_data(f.data);
  const int64_t nlist = identity::ivf_nlist(f.index.factory, e->dim(), f.index.metric);
  const int64_t n = identity::ivf_train_sample_size(nlist, int64_t(m.entries.size()), f.train_sample);
  auto gen = at::detail::createCPUGenerator(f.index.seed);
  auto pick = std::get<0>(torch::randperm(int64_t(m.entries.size()), gen, torch::kLong).slice(0, 0, n).sort());
  io::Manifest sample = m;
  sample.entries.clear();
  for (int64_t i = 0; i < n; ++i) sample.entries.push_back(m.entries[size_t(pick[i].item<int64_t>())]);
  log_info("training ", f.index.factory, " on ", n, " of the ", m.entries.size(), " images of ", f.data);
  auto emb = embed_manifest(*e, sample, f.crop, f.batch, &record, "train sample");
  RW_CHECK(!emb.rows.empty(), Input, "no image of the training sample of ", f.data, " could be embedded");
  record.mark("embed sample");
  io::ensure_dir(f.out);
  identity::ivf_train(f.index, emb.embeddings, trained_path(f));
  record.mark("train");
  nlohmann::json rec = {{"key", train_key(f, *e)}, {"sampled", n}, {"embedded", emb.rows.size()}, {"nlist", nlist},
                        {"fnv1a64", io::file_content_hash(trained_path(f))}, {"build", build_string()}};
  io::write_file_atomic(f.out + "/trained.json", io::dump_json(rec, 2) + "\n");
  record.results()["trained"] = rec;
}

/// Trains once: in this process, or under MPI on rank 0 while the others wait (every rank must
/// call it). `if_missing`: only when OUT holds no trained index yet (rank 0 decides).
void train_once(const BuildFlags& f, io::RunRecord& like, const ShardFlags& sf, bool if_missing = false) {
  const bool mpi = dist::mpi_active();
  const bool mine = !mpi || dist::resolve_shard(sf.shard).index == 0;
  if (mine && !(if_missing && fs::exists(trained_path(f)))) {
    io::RunRecord tr("index build --train-only");
    tr.options() = like.options();
    tr.set_seed(f.index.seed);
    try {
      run_and_record(tr, f.out + "/trained.run.json", [&] { train_ivf(f, tr); });
    } catch (...) {
      if (mpi) dist::all_ok(false);
      throw;
    }
  }
  RW_CHECK(dist::all_ok(true), Input, "rank 0 could not train ", trained_path(f), "; see ", f.out, "/trained.run.json");
}

/// A shard of an IVF build: its candidates added to a copy of the trained index (shard.faiss),
/// keyed by manifest row, and their items.
void build_ivf_part(const BuildFlags& f, io::RunRecord& record, const std::string& dir, const dist::Shard& shard) {
  io::ensure_dir(dir);
  run_and_record(record, dir + "/run.json", [&] {
    auto e = models::load_embedder(f.embedder);
    const std::string th = check_trained(f, *e);
    auto c = embed_candidates(f, *e, record, shard);
    write_part_items(dir, c);
    std::vector<int64_t> keys(c.rows.begin(), c.rows.end());
    identity::ivf_add_shard(trained_path(f), c.items.empty() ? torch::zeros({0, e->dim()}) : c.embeddings,
                            torch::tensor(keys, torch::kLong), dir + "/shard.faiss");
    record_part_files(record, dir, {"shard.faiss", "items.csv"});
    record.mark("add");
    record.results()["added"] = c.items.size();
    record.results()["embedder_id"] = e->id();
    record.results()["trained_fnv1a64"] = th;
  });
}

/// Merges IVF shard files (keys: manifest rows, ascending with the items) into OUT, calibrated and saved.
identity::CalibrationReport finish_ivf(const BuildFlags& f, const nlohmann::json& extra, io::RunRecord& record,
                                       const std::vector<std::string>& files, const std::vector<int64_t>& keys,
                                       const std::function<identity::Item(int64_t)>& item_of) {
  RW_CHECK(!keys.empty(), Input, "no image of ", f.data, " could be embedded; see ", f.out, "/run.json for the reasons");
  auto idx = identity::IdentityIndex::merge_ivf_shards(f.index, trained_path(f), files, keys, item_of,
                                                       f.on_disk ? identity::IdentityIndex::next_lists_path(f.out) : "",
                                                       progress_fn());
  progress_done();
  record.mark("merge lists");
  return finish_index(f, extra, record, idx, keys.size(), item_of(0).dataset);
}

/// The whole IVF build in one process: train (unless trained), embed, add, merge.
identity::CalibrationReport whole_ivf(const BuildFlags& f, nlohmann::json extra, io::RunRecord& record,
                                      models::Embedder& e, const ShardFlags& sf) {
  if (!fs::exists(trained_path(f))) train_once(f, record, sf);
  check_trained(f, e);
  auto c = embed_candidates(f, e, record, dist::Shard{});
  const std::string tmp = f.out + "/.whole-shard.faiss";
  std::vector<int64_t> keys(c.rows.begin(), c.rows.end());
  if (!keys.empty()) identity::ivf_add_shard(trained_path(f), c.embeddings, torch::tensor(keys, torch::kLong), tmp);
  record.mark("add");
  c.embeddings = at::Tensor();
  auto calib = finish_ivf(f, extra, record, {tmp}, keys, [&](int64_t i) -> identity::Item { return c.items[size_t(i)]; });
  std::error_code ec;
  fs::remove(tmp, ec);
  return calib;
}

/// The IVF parts merged in manifest-row order, as one process would have added them.
identity::CalibrationReport merge_ivf_parts(const BuildFlags& f, const nlohmann::json& extra, io::RunRecord& record,
                                            const models::Embedder& e, const std::vector<dist::Part>& parts) {
  const std::string th = check_trained(f, e);
  std::vector<std::string> files;
  for (const auto& p : parts) {
    check_part_embedder(p, e);
    RW_CHECK(p.record["results"].value("trained_fnv1a64", "") == th, Input, "--merge: ", p.dir,
             " added to another trained index than ", trained_path(f), "; rerun shard ", p.shard.str());
    files.push_back(p.dir + "/shard.faiss");
  }
  io::CsvRow header;
  auto merged = merge_csv_by(parts, "items.csv", "source_row", &header);
  std::vector<int64_t> keys;
  for (const auto& r : merged.rows) keys.push_back(std::stoll(r[3]));
  return finish_ivf(f, extra, record, files, keys, [&](int64_t i) -> identity::Item {
    const auto& r = merged.rows[size_t(i)];
    return {r[0], r[1], r[2]};
  });
}

/// The build as one process, a shard, or a merge (run_sharded); `ivf`: through a trained index.
ShardedRun run_build(const BuildFlags& f, const nlohmann::json& extra, io::RunRecord& record, const ShardFlags& sf,
                     bool ivf, identity::CalibrationReport& calib) {
  auto whole = [&](io::RunRecord& rec, const std::function<identity::CalibrationReport(models::Embedder&, const nlohmann::json&)>& build) {
    io::ensure_dir(f.out);
    run_and_record(rec, f.out + "/run.json", [&] {
      auto e = models::load_embedder(f.embedder);
      nlohmann::json ex = extra;
      ex["embedder"] = embedder_record(*e, f.embedder);
      calib = build(*e, ex);
    });
  };
  const std::string command = f.append ? "index build --append" : "index build";
  return run_sharded(sf, {command, f.out, &record,
                          [&](const std::string& dir, const dist::Shard& s) {
                            if (!s.whole()) return ivf ? build_ivf_part(f, record, dir, s) : build_part(f, record, dir, s);
                            whole(record, [&](models::Embedder& e, const nlohmann::json& ex) {
                              return ivf ? whole_ivf(f, ex, record, e, sf)
                                         : index_candidates(f, ex, record, e, embed_candidates(f, e, record, s));
                            });
                          },
                          [&](const std::vector<dist::Part>& parts, io::RunRecord& merged) {
                            whole(merged, [&](models::Embedder& e, const nlohmann::json& ex) {
                              return ivf ? merge_ivf_parts(f, ex, merged, e, parts)
                                         : index_candidates(f, ex, merged, e, merged_candidates(parts, e));
                            });
                          }});
}

int build_cmd(const Args& args) {
  CommonOptions common;
  BuildFlags f;
  ShardFlags sf;
  po::options_description desc("index build options");
  add_build_flags(desc, f);
  add_shard_flags(desc, sf);
  if (!parse_command("rewind index build --data MANIFEST --embedder E --out indexes/NAME [--recipe indexes/R.json] [options]",
                     args, desc, common))
    return 0;
  f.index.fars = parse_fars(f.fars);
  nlohmann::json extra = nlohmann::json::object(), rflags = nlohmann::json::object();
  if (!f.recipe.empty()) {
    RW_CHECK(!f.append, Usage, "--recipe sets up a new index; --append keeps the settings ", f.out, " was built with");
    std::error_code ec;
    extra["recipe"] = {{"path", fs::absolute(f.recipe, ec).lexically_normal().string()},
                       {"content", apply_recipe(f.recipe, given_flags(args, desc), f.index, rflags)}};
    f.on_disk = f.on_disk || rflags.value("on_disk", false);
    f.train_sample = rflags.value("train_sample", f.train_sample);
  }
  const auto& o = f.index;
  io::RunRecord record(f.append ? "index build --append" : "index build");
  record.set_seed(o.seed);
  record.options() = {{"data", f.data}, {"embedder", f.embedder}, {"out", f.out}, {"factory", o.factory},
                      {"metric", o.metric}, {"fars", o.fars}, {"ef_search", o.hnsw_ef_search},
                      {"ef_construction", o.hnsw_ef_construction}, {"nprobe", o.ivf_nprobe},
                      {"calib_queries", o.calib_queries}, {"crop", f.crop}, {"embed_batch", f.batch}, {"append", f.append}};
  if (extra.contains("recipe")) record.options()["recipe"] = extra["recipe"];
  RW_CHECK(f.append || sf.merge || (!fs::exists(f.out + "/manifest.json") && !fs::exists(f.out + "/index.faiss")), Usage,
           f.out, " already holds an index: pass --append to add to it, or choose another --out (or delete the folder)");
  const bool ivf = f.on_disk || f.train_only || fs::exists(trained_path(f));
  RW_CHECK(!ivf || !f.append, Usage, "--append adds to an index whose lists are in memory; ", f.out, " was built in "
           "shards from a trained index (or is asked to be): rebuild it with the new images instead");
  RW_CHECK(!ivf || f.index.factory.find("IVF") != std::string::npos, Usage, "--on-disk and --train-only need an IVF "
           "factory (--factory IVF4096,PQ32, or --recipe indexes/ivfpq-10m.json), got ", f.index.factory);
  RW_CHECK(f.train_sample >= 0, Usage, "--train-sample must be >= 0 (0: 64 a list), got ", f.train_sample);
  if (ivf || sharded(sf)) {
    f.data_hash = data_rows_hash(f.data);
    record.options()["data_rows_hash"] = f.data_hash;
  }
  record.options()["on_disk"] = f.on_disk;
  record.options()["train_sample"] = f.train_sample;
  if (f.train_only) {
    RW_CHECK(!sf.merge && (sf.shard.empty() || sf.shard == "0/1"), Usage, "--train-only runs once, not in shards");
    train_once(f, record, sf);
    std::cout << "trained " << f.index.factory << " into " << trained_path(f) << " (see " << f.out
              << "/trained.json); next: the shards (--shard I/N), then --merge\n";
    return 0;
  }
  // under MPI rank 0 trains (unless trained) while the other ranks wait, then every rank adds its shard
  if (ivf && !sf.merge && dist::mpi_active()) train_once(f, record, sf, /*if_missing=*/true);
  identity::CalibrationReport calib;
  auto ran = run_build(f, extra, record, sf, ivf, calib);
  if (!ran.merged && !ran.shard.whole()) {
    std::cout << (ivf ? "added " : "embedded ") << record.results().value("added", 0) << " candidates of shard " << ran.shard.str()
              << " into " << dist::part_dir(f.out, ran.shard) << "\n";
    return 0;
  }
  std::cout << (ran.merged ? "merged " + std::to_string(ran.parts) + " parts: " : std::string())
            << (f.append ? "appended " : "indexed ") << record.results()["added"].get<int64_t>() << " images ("
            << record.results()["count"].get<int64_t>() << " in all) into " << f.out;
  if (record.skipped()) std::cout << "; " << record.skipped() << " images skipped (see " << f.out << "/run.json)";
  std::cout << "\n";
  std::cout << "layout: " << record.results().value("layout", "") << "\n";
  print_calibration(std::cout, calib);
  return 0;
}

// ------------------------------------------------------------------------------------------------
// index query

/// The embedder an index was built with (or `path`, when it is the same file), checked against
/// the index's manifest: another network's similarities would make its thresholds meaningless.
std::unique_ptr<models::Embedder> load_index_embedder(const identity::IdentityIndex& idx, const std::string& index_dir,
                                                      const std::string& path) {
  auto man = idx.manifest();
  RW_CHECK(man.contains("embedder"), Input, index_dir, "/manifest.json records no embedder; rebuild the index");
  const auto& erec = man["embedder"];
  std::string epath = path.empty() ? erec.value("path", "") : path;
  RW_CHECK(fs::exists(epath), Input, "the embedder recorded in ", index_dir, "/manifest.json (", epath,
           ") does not exist here; pass the same file with --embedder");
  auto e = models::load_embedder(epath);
  RW_CHECK(e->dim() == idx.dim(), Input, "embedder ", epath, " makes ", e->dim(), "-d vectors but the index ", index_dir,
           " holds ", idx.dim(), "-d ones; query with the embedder the index was built with (", erec.value("path", "?"),
           ")");
  RW_CHECK(e->id() == erec.value("id", ""), Input, "embedder ", epath, " (", e->id(),
           ") is not the one the index was built with (", erec.value("id", "?"), " from ", erec.value("path", "?"),
           "): its similarities and thresholds would be meaningless. Query with that file, or rebuild the index with this one");
  return e;
}

/// What a matches CSV holds: queries (images or identities), those with a rank-1 match, rows.
struct QueryCounts {
  int64_t queries = 0, matched = 0, rows = 0;
};

using Results = std::vector<std::vector<identity::Match>>;

/// Writes `out` line by line (atomically): a header, then what `rows_of` emits.
void write_csv(const std::string& out, const std::vector<std::string>& header,
               const std::function<void(const std::function<void(const std::vector<std::string>&)>&)>& rows_of) {
  io::write_via_temp(out, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary);
    f << io::csv_line(header);
    rows_of([&](const std::vector<std::string>& cells) { f << io::csv_line(cells); });
    return bool(f.flush());
  });
}

/// One row per (query image, rank).
QueryCounts write_image_matches(const std::string& out, const io::Manifest& m, const std::vector<size_t>& rows,
                                const Results& res, const identity::IdentityIndex& idx, double thr) {
  QueryCounts c;
  c.queries = int64_t(rows.size());
  write_csv(out, {"query_path", "rank", "match_path", "identity", "similarity", "verdict", "query_identity"},
            [&](const auto& emit) {
              for (size_t q = 0; q < res.size(); ++q) {
                const auto& qe = m.entries[rows[q]];
                c.matched += !res[q].empty() && res[q][0].id >= 0 && res[q][0].similarity > thr;
                for (size_t r = 0; r < res[q].size(); ++r) {
                  const auto& mt = res[q][r];
                  if (mt.id < 0) continue;
                  const auto it = idx.item(mt.id);
                  emit({qe.path, std::to_string(r + 1), it.path, it.identity, report::fmt(mt.similarity, 4),
                        mt.similarity > thr ? "match" : "no-match", qe.identity});
                  ++c.rows;
                }
              }
            });
  return c;
}

/// One row per (query identity, candidate identity seen in its images' top-k): the best
/// similarity over their images, and how many of the query identity's images saw the candidate.
QueryCounts write_identity_matches(const std::string& out, const io::Manifest& m, const std::vector<size_t>& rows,
                                   const Results& res, const identity::IdentityIndex& idx, double thr, int k) {
  std::map<std::string, std::map<std::string, std::pair<float, int>>> agg;
  std::vector<std::string> order;
  for (size_t q = 0; q < res.size(); ++q) {
    const auto& qid = m.entries[rows[q]].identity;
    if (!agg.count(qid)) order.push_back(qid);
    auto& cand = agg[qid];
    std::set<std::string> seen;
    for (const auto& mt : res[q]) {
      if (mt.id < 0) continue;
      const auto id = idx.item(mt.id).identity;
      auto& c = cand.emplace(id, std::make_pair(-2.0f, 0)).first->second;
      c.first = std::max(c.first, mt.similarity);
      if (seen.insert(id).second) ++c.second;
    }
  }
  QueryCounts c;
  c.queries = int64_t(order.size());
  write_csv(out, {"query_identity", "rank", "identity", "similarity", "support", "verdict"}, [&](const auto& emit) {
    for (const auto& qid : order) {
      std::vector<std::pair<std::string, std::pair<float, int>>> v(agg[qid].begin(), agg[qid].end());
      std::stable_sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.first > b.second.first; });
      if (v.size() > size_t(k)) v.resize(size_t(k));
      c.matched += !v.empty() && v[0].second.first > thr;
      for (size_t r = 0; r < v.size(); ++r) {
        emit({qid, std::to_string(r + 1), v[r].first, report::fmt(v[r].second.first, 4),
              std::to_string(v[r].second.second), v[r].second.first > thr ? "match" : "no-match"});
        ++c.rows;
      }
    }
  });
  return c;
}

int query_cmd(const Args& args) {
  CommonOptions common;
  std::string index_dir, data, out, embedder, crop = "auto";
  int k = 5;
  double far = 1e-3;
  int64_t batch = 128;
  bool identity_level = false, pair = false, skip_hash = false;
  po::options_description desc("index query options");
  desc.add_options()
      ("index", po::value(&index_dir)->required(), "index folder made by rewind index build")
      ("data", po::value(&data)->required(), "query images: manifest, folder with manifest.csv, or image folder")
      ("out", po::value(&out)->required(), "matches CSV: query_path,rank,match_path,identity,similarity,verdict,query_identity")
      ("k", opt(&k), "matches per query")
      ("far", opt(&far), "false-accept rate of the match verdict (one of the FARs calibrated at build)")
      ("pair-threshold", po::bool_switch(&pair),
       "use the 1:1 pair threshold instead of the 1:N search threshold (more matches, more false ones)")
      ("identity-level", po::bool_switch(&identity_level),
       "one row per (query identity, candidate identity): best similarity over their images")
      ("embedder", po::value(&embedder), "embedder (default: the one recorded in the index manifest; must be the same file)")
      ("crop", opt(&crop), kCropHelp)
      ("embed-batch", opt(&batch), "images per embedder pass")
      ("skip-hash-check", po::bool_switch(&skip_hash),
       "do not hash the index files on load (very large indexes); sizes and structure are still checked");
  if (!parse_command("rewind index query --index indexes/NAME --data MANIFEST|DIR --out matches.csv [options]", args, desc,
                     common))
    return 0;
  io::RunRecord record("index query");
  record.options() = {{"index", index_dir}, {"data", data}, {"out", out}, {"k", k}, {"far", far},
                      {"identity_level", identity_level}, {"pair_threshold", pair}, {"crop", crop}};
  const std::string run_json = fs::path(out).replace_extension("").string() + ".run.json";
  QueryCounts c;
  double thr = 0;
  run_and_record(record, run_json, [&] {
    auto idx = identity::IdentityIndex::load(index_dir, !skip_hash);
    record.results()["index_integrity"] = idx.integrity();
    auto e = load_index_embedder(idx, index_dir, embedder);
    thr = pair ? idx.pair_threshold(far) : idx.search_threshold(far);
    record.results()["threshold"] = thr;
    record.results()["threshold_kind"] = pair ? "pair" : "search";
    auto m = data::open_data(data);
    auto emb = embed_manifest(*e, m, crop, batch, &record);
    RW_CHECK(!emb.rows.empty(), Input, "no query image of ", data, " could be embedded; see ", run_json);
    record.mark("embed");
    auto res = idx.search(emb.embeddings, k);
    record.mark("search");
    c = identity_level ? write_identity_matches(out, m, emb.rows, res, idx, thr, k)
                       : write_image_matches(out, m, emb.rows, res, idx, thr);
    record.results()["queries"] = c.queries;
    record.results()["matched_rank1"] = c.matched;
  });
  std::cout << c.queries << (identity_level ? " query identities" : " queries") << ", " << c.matched
            << " with a rank-1 match at FAR " << far << " (" << (pair ? "pair" : "search") << " threshold "
            << report::fmt(thr, 4) << "); " << c.rows << " rows in " << out << "\n";
  if (record.skipped()) std::cout << record.skipped() << " query images skipped (see " << run_json << ")\n";
  return 0;
}

// ------------------------------------------------------------------------------------------------
int info_cmd(const Args& args) {
  CommonOptions common;
  common.runs_models = false;
  std::string index_dir;
  bool json = false, skip_hash = false;
  po::options_description desc("index info options");
  desc.add_options()("index", po::value(&index_dir)->required(), "index folder")(
      "json", po::bool_switch(&json), "print manifest.json as is")(
      "skip-hash-check", po::bool_switch(&skip_hash), "do not hash the index files (sizes and structure are still checked)");
  po::positional_options_description pos;
  pos.add("index", 1);
  if (!parse_command("rewind index info [--index] indexes/NAME [--json]", args, desc, common, &pos)) return 0;
  auto idx = identity::IdentityIndex::load(index_dir, !skip_hash);
  auto m = idx.manifest();
  if (json) {
    std::cout << io::dump_json(m, 2) << "\n";
    return 0;
  }
  std::map<std::string, int> ids;
  for (int64_t i = 0; i < idx.size(); ++i) ++ids[idx.item(i).identity];
  std::cout << "index      " << index_dir << "\n"
            << "count      " << idx.size() << " images of " << ids.size() << " identities\n"
            << "factory    " << m.value("factory", "") << " (" << m.value("metric", "") << ", " << idx.dim() << "-d)\n"
            << "layout     " << idx.layout() << "\n";
  if (m.contains("embedder"))
    std::cout << "embedder   " << m["embedder"].value("describe", "") << "\n           " << m["embedder"].value("path", "")
              << " (" << m["embedder"].value("id", "") << ")\n";
  if (m.contains("recipe"))
    std::cout << "recipe     " << m["recipe"].value("path", "") << " (factory "
              << m["recipe"].value("content", nlohmann::json::object()).value("factory", "-") << ")\n";
  if (m.contains("sources"))
    for (const auto& s : m["sources"])
      std::cout << "source     " << s.value("data", "") << " (" << s.value("added", 0) << " images, " << s.value("at", "")
                << ")\n";
  std::cout << "built by   " << m.value("build", "") << " at " << m.value("created_utc", "") << "\n"
            << "integrity  " << idx.integrity() << " (generation " << m.value("generation", int64_t(0)) << ")\n";
  if (m.contains("calibration")) print_calibration(std::cout, idx.calibration());
  return 0;
}

}  // namespace

int cmd_index(const Args& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout)
        << "usage: rewind index build|query|info [options]\n\n"
           "  build   embed candidate images and index them (FAISS), calibrating match thresholds\n"
           "  query   top-k identity matches for query images, with verdicts at a calibrated FAR\n"
           "  info    what an index holds: count, embedder, factory, layout, thresholds\n\n"
           "'rewind index <command> --help' shows each command's options.\n";
    return args.empty() ? 2 : 0;
  }
  Args rest(args.begin() + 1, args.end());
  if (args[0] == "build") return build_cmd(rest);
  if (args[0] == "query") return query_cmd(rest);
  if (args[0] == "info") return info_cmd(rest);
  RW_FAIL(Usage, "unknown index command '", args[0], "' (try: build, query, info)");
}

}  // namespace rw::cli
