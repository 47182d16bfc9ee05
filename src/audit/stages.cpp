#include "rewind/audit/stages.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/io/run_record.h"
#include "rewind/core/runtime.h"
#include "rewind/identity/index.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/face_crop.h"
#include "rewind/io/npy.h"
#include "rewind/mia/metrics.h"
#include "rewind/models/sampling.h"

namespace fs = std::filesystem;

namespace rw::audit {

std::vector<double> to_vector(const at::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return {};
  auto c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

ProgressFn staged(const ProgressFn& progress, const std::string& stage) {
  if (!progress) return {};
  return [progress, stage](const Progress& p) {
    Progress q = p;
    q.stage = stage;
    return progress(q);
  };
}

size_t record_skips(io::RunRecord* record, const std::vector<data::Skipped>& skipped) {
  if (record)
    for (const auto& s : skipped) record->add_skip(s.path, s.reason);
  return skipped.size();
}

std::pair<double, double> robust_scale(const std::vector<double>& values) {
  const double med = mia::median(values);
  std::vector<double> dev;
  for (double v : values) dev.push_back(std::abs(v - med));
  return {med, 1.4826 * mia::median(dev) + 1e-12};
}

std::string manifest_hash(const io::Manifest& m) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0x1f;
    h *= 1099511628211ull;
  };
  // the folder the entries are resolved in, however its path is written (./, ../, a symlink, absolute)
  std::error_code ec;
  // (none: relative entries resolve in the working folder, so it is that folder)
  const auto base = fs::weakly_canonical(m.base_dir.empty() ? fs::path(".") : fs::path(m.base_dir), ec);
  mix(ec ? m.base_dir : base.string());
  for (const auto& e : m.entries) {
    mix(e.path);
    mix(e.identity);
    mix(std::to_string(e.member));
  }
  char b[20];
  std::snprintf(b, sizeof b, "%016llx", (unsigned long long)h);
  return b;
}

// ------------------------------------------------------------------------------------------------
data::Loader pipeline_loader(const models::ImageShape& shape, const std::string& crop) {
  const auto mode = io::parse_crop_mode(crop);
  if (mode == io::CropMode::kCenter) return data::image_loader({shape.channels, shape.height, io::ResizeMode::kCenterCrop});
  auto cropper = std::make_shared<io::FaceCropper>(mode, shape.height, shape.channels);
  return [cropper, crop](size_t, const std::string& path) {
    bool found = true;
    auto t = cropper->load(path, &found);
    RW_CHECK(found, Input, "no face found in '", path, "' (--crop ", crop, "); skipped: crop the face by hand, or pass "
             "--crop center to use the centre of the image");
    return t;
  };
}

Embedded embed_manifest(models::Embedder& e, const io::Manifest& m, const models::ImageShape& shape,
                        const std::string& stage, const ProgressFn& progress, int64_t batch, const data::Shard& shard,
                        const std::string& crop, models::Discriminator* d) {
  data::StreamOptions so;
  so.batch = batch;
  so.stage = stage;
  so.shard = shard.blocks_of(batch);
  data::ImageStream s(m, pipeline_loader(shape, crop), so, progress);
  return embed_stream(e, s, d);
}

void check_discriminator_logits(const at::Tensor& disc, const std::string& what) {
  if (!disc.defined() || disc.numel() == 0) return;
  const int64_t nan = disc.isnan().sum().item<int64_t>();
  RW_CHECK(nan < disc.numel(), Model, "the discriminator gave NaN for every one of the ", disc.numel(), " ", what,
           ": its weights are damaged, or it is not a discriminator of these images");
  if (nan > 0)
    log_warn("the discriminator gave NaN for ", nan, " of the ", disc.numel(), " ", what,
             ": they are left out of its scores");
}

Embedded merge_embedded(const std::vector<Embedded>& parts) {
  std::vector<std::pair<size_t, std::pair<size_t, int64_t>>> order;  // row -> (part, position)
  Embedded out;
  for (size_t p = 0; p < parts.size(); ++p) {
    RW_CHECK(parts[p].emb.size(0) == int64_t(parts[p].rows.size()), Input, "merge: a part holds ", parts[p].emb.size(0),
             " embeddings for ", parts[p].rows.size(), " rows; rerun that shard");
    for (size_t i = 0; i < parts[p].rows.size(); ++i) order.push_back({parts[p].rows[i], {p, int64_t(i)}});
    out.skipped.insert(out.skipped.end(), parts[p].skipped.begin(), parts[p].skipped.end());
  }
  std::sort(order.begin(), order.end());
  const bool with_disc = !parts.empty() && parts[0].disc.defined();
  for (const auto& p : parts)
    RW_CHECK(p.disc.defined() == with_disc && (!with_disc || p.disc.size(0) == int64_t(p.rows.size())), Input,
             "merge: the parts disagree on the discriminator's scores; rerun the shards with the same options");
  std::vector<at::Tensor> rows, disc;
  for (size_t i = 0; i < order.size(); ++i) {
    if (with_disc) disc.push_back(parts[order[i].second.first].disc[order[i].second.second]);
    RW_CHECK(i == 0 || order[i].first != order[i - 1].first, Input, "merge: manifest row ", order[i].first,
             " is in two parts; the parts are not shards of one run");
    out.rows.push_back(order[i].first);
    rows.push_back(parts[order[i].second.first].emb[order[i].second.second]);
  }
  std::sort(out.skipped.begin(), out.skipped.end(), [](const data::Skipped& a, const data::Skipped& b) { return a.row < b.row; });
  out.emb = rows.empty() ? torch::empty({0, parts.empty() ? 0 : parts[0].emb.size(1)}) : torch::stack(rows);
  if (with_disc) out.disc = disc.empty() ? torch::empty({0}, torch::kFloat64) : torch::stack(disc);
  return out;
}

// ------------------------------------------------------------------------------------------------
SampleBank::SampleBank(models::Generator& g, models::Embedder& e, int64_t count, uint64_t seed,
                       const ProgressFn& progress, int64_t batch, const data::Shard& shard)
    : seed_(seed) {
  RW_CHECK(count >= 1, Usage, "the number of samples must be >= 1, got ", count);
  torch::NoGradGuard ng;
  const int64_t d = g.latent_dim();
  std::vector<int64_t> all;
  const auto mine = shard.blocks_of(batch);  // each batch of a shard = the batch one process makes
  for (int64_t i = 0; i < count; ++i)
    if (mine.contains(i)) all.push_back(i);
  const int64_t n = int64_t(all.size());
  std::vector<at::Tensor> parts;
  for (int64_t b = 0; b < n; b += batch) {
    const int64_t k = std::min(n, b + batch) - b;
    std::vector<int64_t> ids(all.begin() + b, all.begin() + b + k);
    // the images stay on the generator's device for the embedder (one GPU pass on CUDA); embeddings come home
    auto x = g.generate(models::sample_latents_at(ids, d, seed).to(g.device())).clamp(-1, 1);
    const int64_t eb = e.device().is_cuda() ? k : 128;
    for (int64_t s = 0; s < k; s += eb) parts.push_back(e.embed(x.slice(0, s, std::min(k, s + eb))).to(torch::kCPU));
    report_progress(progress, {"generate + embed samples", b + k, n, ""});
  }
  emb_ = parts.empty() ? torch::empty({0, e.dim()}) : torch::cat(parts);
  if (emb_.size(0) > 0) build_index();
}

SampleBank::SampleBank(at::Tensor embeddings, uint64_t seed) : emb_(std::move(embeddings)), seed_(seed) { build_index(); }
SampleBank::~SampleBank() = default;
SampleBank::SampleBank(SampleBank&&) noexcept = default;

void SampleBank::build_index() {
  index_ = std::make_unique<identity::IdentityIndex>(emb_.size(1), identity::IndexOptions{});
  std::vector<identity::Item> items(size_t(emb_.size(0)), identity::Item{"", "", "generated"});
  index_->add(emb_, items);
}

int64_t SampleBank::count() const { return emb_.size(0); }

void SampleBank::nearest(const at::Tensor& queries, std::vector<double>* sim, std::vector<int64_t>* sample) const {
  sim->clear();
  sample->clear();
  if (queries.size(0) == 0) return;
  for (const auto& r : index_->search(queries, 1)) {
    sim->push_back(r[0].similarity);
    sample->push_back(r[0].id);
  }
}

at::Tensor SampleBank::images(models::Generator& g, uint64_t seed, const std::vector<int64_t>& ids) {
  torch::NoGradGuard ng;
  auto s = g.output_shape();
  if (ids.empty()) return torch::empty({0, s.channels, s.height, s.width});
  return g.generate(models::sample_latents_at(ids, g.latent_dim(), seed)).clamp(-1, 1);
}

// ------------------------------------------------------------------------------------------------
namespace {
/// A fingerprint difference in the words of the command line: top-level keys are flags
/// ("--per-identity was 0, here 2"), recovery_fingerprint's keys the recovery flags they come from.
std::string as_flags(std::string d) {
  static const std::pair<const char*, const char*> names[] = {
      {"recovery.restarts", "--restarts"},   {"recovery.steps", "--steps"},
      {"recovery.lr", "--lr"},               {"recovery.optimizer", "--optimizer"},
      {"recovery.latent", "--latent"},       {"recovery.weights", "--recovery-loss"},
      {"recovery.feature_net", "--feature-net"}, {"recovery.precision", "--precision"},
      {"recovery.w_start", "--w-start"},     {"recovery.schedule", "the recovery schedule"},
      {"recovery.scales", "the recovery scales"}};
  for (const auto& [from, to] : names) {
    const size_t n = std::strlen(from);
    if (d.compare(0, n, from) == 0 && (d.size() == n || d[n] == ' ' || d[n] == '.')) return to + d.substr(n);
  }
  return d;
}

/// What differs between a kept fingerprint file's text and the fingerprint wanted now.
std::string fingerprint_difference(const std::string& have, const nlohmann::json& want) {
  try {
    auto d = as_flags(io::describe_difference(nlohmann::json::parse(have), want, true));
    return d.empty() ? "the file's bytes differ" : d;
  } catch (const nlohmann::json::exception&) {
    return "the file is not JSON";
  }
}
}  // namespace

StageCache::StageCache(std::string dir, nlohmann::json fingerprint, bool resume, const std::string& advice)
    : dir_(std::move(dir)) {
  if (dir_.empty()) return;
  const std::string fp = dir_ + "/fingerprint.json", want = io::dump_json(fingerprint, 1);
  if (resume && fs::exists(fp)) {
    const std::string have = io::read_file(fp);
    RW_CHECK(have == want, Usage, advice.empty() ? "resume: " : "", "the stages in ", dir_,
             " were made with other options or inputs (",
             fingerprint_difference(have, fingerprint), "; ", fp, "); ",
             advice.empty() ? "rerun with the same ones, or without --resume to start over" : advice);
    return;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  io::ensure_dir(dir_);
  io::write_file_atomic(fp, want);
}

// A kept stage that cannot be read back (damaged on disk) is done again, not trusted or fatal.
bool StageCache::load(const std::string& name, at::Tensor* t) const {
  const std::string path = dir_ + "/" + name + ".npy";
  if (dir_.empty() || !fs::exists(path)) return false;
  try {
    *t = io::read_npy(path);
  } catch (const Error& e) {
    log_warn("kept stage ", path, " is damaged (", e.message(), "); doing it again");
    return false;
  }
  return true;
}

void StageCache::save(const std::string& name, const at::Tensor& t) const {
  if (dir_.empty()) return;
  io::write_npy(dir_ + "/" + name + ".npy", t);
  io::crash_point(("stage:" + name).c_str());
}

bool StageCache::load_json(const std::string& name, nlohmann::json* j) const {
  const std::string path = dir_ + "/" + name + ".json";
  if (dir_.empty() || !fs::exists(path)) return false;
  try {
    *j = nlohmann::json::parse(io::read_file(path));
  } catch (const std::exception& e) {
    log_warn("kept stage ", path, " is damaged (", e.what(), "); doing it again");
    return false;
  }
  return true;
}

void StageCache::save_json(const std::string& name, const nlohmann::json& j) const {
  if (dir_.empty()) return;
  io::write_file_atomic(dir_ + "/" + name + ".json", io::dump_json(j) + "\n");
  io::crash_point(("stage:" + name).c_str());
}

void StageCache::guard_files(const std::vector<std::pair<std::string, const io::Manifest*>>& manifests) const {
  if (dir_.empty()) return;
  nlohmann::json want = nlohmann::json::object();
  for (const auto& [name, m] : manifests) {
    if (!m) continue;
    std::string rows;
    std::error_code ec;
    for (size_t i = 0; i < m->entries.size(); ++i) {
      const std::string f = m->resolve(i);
      const auto size = fs::file_size(f, ec);
      const auto time = ec ? 0 : fs::last_write_time(f, ec).time_since_epoch().count();
      rows += ec ? f + "\t-\n" : f + "\t" + std::to_string(size) + "\t" + std::to_string(time) + "\n";
    }
    want[name] = io::content_hash(rows);
  }
  const std::string path = dir_ + "/files-stamp.json";
  nlohmann::json have;
  if (load_json("files-stamp", &have) && have.is_object()) {
    for (auto it = want.begin(); it != want.end(); ++it)
      RW_CHECK(!have.contains(it.key()) || have[it.key()] == it.value(), Usage, "resume: an image the ", it.key(),
               " manifest lists changed since the stages in ", dir_, " were kept (a file's size or modification time "
               "differs; ", path, "); resuming would mix results of its old and new contents: rerun without --resume "
               "to start over");
    return;
  }
  save_json("files-stamp", want);
}

void StageCache::clear() const {
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

nlohmann::json skipped_json(const std::vector<data::Skipped>& s) {
  auto j = nlohmann::json::array();
  for (const auto& k : s) j.push_back({k.row, k.path, k.reason});
  return j;
}
std::vector<data::Skipped> skipped_from(const nlohmann::json& j) {
  std::vector<data::Skipped> s;
  for (const auto& k : j) s.push_back({k[0].get<size_t>(), k[1].get<std::string>(), k[2].get<std::string>()});
  return s;
}
at::Tensor rows_tensor(const std::vector<size_t>& rows) {
  std::vector<int64_t> r(rows.begin(), rows.end());
  return torch::tensor(r, torch::kLong);
}
std::vector<size_t> rows_from(const at::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return std::vector<size_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

bool load_embedded(const StageCache& c, const std::string& name, Embedded* out) {
  at::Tensor emb, rows;
  nlohmann::json meta;
  // the json is written last: its presence marks the stage complete
  if (!c.load_json(name, &meta) || !c.load(name + "-emb", &emb) || !c.load(name + "-rows", &rows)) return false;
  out->emb = emb.to(torch::kFloat32);
  out->rows = rows_from(rows);
  out->skipped = skipped_from(meta.at("skipped"));
  if (meta.value("discriminator", false) && !c.load(name + "-disc", &out->disc)) return false;
  return true;
}

void save_embedded(const StageCache& c, const std::string& name, const Embedded& e) {
  c.save(name + "-emb", e.emb);
  c.save(name + "-rows", rows_tensor(e.rows));
  if (e.disc.defined()) c.save(name + "-disc", e.disc);
  c.save_json(name, {{"skipped", skipped_json(e.skipped)}, {"discriminator", e.disc.defined()}});
}

Embedded kept_embedded(const StageCache& cache, const std::string& name, const std::function<Embedded()>& make) {
  Embedded e;
  if (load_embedded(cache, name, &e)) return e;
  e = make();
  save_embedded(cache, name, e);
  return e;
}

std::unique_ptr<SampleBank> kept_sample_bank(const StageCache& cache, models::Generator& g, models::Embedder& e,
                                             int64_t count, uint64_t seed, const ProgressFn& progress,
                                             const std::string& name) {
  at::Tensor emb;
  if (cache.load(name, &emb)) return std::make_unique<SampleBank>(emb.to(torch::kFloat32), seed);
  auto bank = std::make_unique<SampleBank>(g, e, count, seed, progress, kSampleBatch);
  cache.save(name, bank->embeddings());
  return bank;
}

// ------------------------------------------------------------------------------------------------
/// Values in one target's latent (flattened: w+ rows are [num_ws * w_dim]).
static int64_t latent_numel(models::Generator& g, const std::string& latent) {
  int64_t n = 1;
  for (auto s : ganinv::latent_shape(g, latent)) n *= s;
  return n;
}

nlohmann::json recovery_fingerprint(const ganinv::InvertOptions& o) {
  return {{"restarts", o.restarts}, {"steps", o.loop.steps}, {"lr", o.loop.lr}, {"optimizer", o.loop.optimizer},
          {"schedule", o.loop.schedule}, {"latent", o.latent}, {"w_start", o.w_start},
          {"weights", {o.w_mse, o.w_l1, o.w_ssim, o.w_identity, o.w_prior, o.w_feature}},
          {"feature_net", o.feature_net ? o.feature_net->id() : ""}, {"scales", o.scales}, {"precision", o.precision}};
}

int64_t recovery_segment_size(const ganinv::InvertOptions& o) {
  const int64_t budget = o.batch > 0 ? o.batch : 64;
  // chunks of whole invert chunks, so that a streamed run equals one in-memory invert() call
  const int64_t per_chunk = std::max<int64_t>(1, budget / std::max<int64_t>(1, o.restarts));
  return per_chunk * std::max<int64_t>(1, 256 / per_chunk);
}

Recovery recover_rows(models::Generator& g, const io::Manifest& m, const std::vector<size_t>& rows,
                      const ganinv::InvertOptions& o, models::Embedder* embedder, const ProgressFn& progress,
                      const std::string& stage, const StageCache* cache, int64_t first_index, const data::Shard& shard, const std::string& crop) {
  RW_CHECK(o.restarts >= 1, Usage, "InvertOptions::restarts must be >= 1, got ", o.restarts);
  const auto shape = g.output_shape();
  // a shard takes blocks of whole invert chunks of `rows` (so each chunk it optimises is the chunk
  // one process optimises); every target keeps the seed of its position in `rows`
  const int64_t per_chunk = std::max<int64_t>(1, (o.batch > 0 ? o.batch : 64) / o.restarts);
  const auto mine = shard.blocks_of(per_chunk);
  std::map<size_t, int64_t> seed_of;  // manifest row -> seed id
  std::vector<size_t> todo;
  for (size_t k = 0; k < rows.size(); ++k)
    if (mine.contains(int64_t(k)) && seed_of.emplace(rows[k], first_index + int64_t(k)).second) todo.push_back(rows[k]);
  data::StreamOptions so;
  so.batch = recovery_segment_size(o);
  so.stage = "load " + stage;
  Recovery out;
  std::vector<at::Tensor> mse, lat, remb;
  data::ImageStream stream(m, todo, pipeline_loader(shape, crop), so);
  const int64_t total = stream.total();
  ProgressFn inner = staged(progress, stage);
  data::Batch b;
  int64_t seg = 0;
  while (stream.next(&b)) {
    const std::string name = stage + "-seg-" + std::to_string(seg++);
    at::Tensor saved;
    if (cache && cache->load(name, &saved)) {
      // [n, 2 + D (+ d)]: row, mse, latent (flattened), recon embedding
      const int64_t D = latent_numel(g, o.latent);
      saved = saved.to(torch::kFloat64);
      RW_CHECK(saved.size(0) == b.size(), Input, "resume: stage segment ", name, " holds ", saved.size(0),
               " targets, expected ", b.size(), "; rerun without resume");
      mse.push_back(saved.select(1, 1).to(torch::kFloat32));
      lat.push_back(saved.slice(1, 2, 2 + D).to(torch::kFloat32));
      if (embedder) remb.push_back(saved.slice(1, 2 + D).to(torch::kFloat32));
    } else {
      const int64_t before = int64_t(out.rows.size()), n = b.size();
      ProgressFn per_target;
      if (inner)  // the invert call's steps, as targets of the whole stage
        per_target = [&](const Progress& p) {
          const int64_t done = before + (p.total > 0 ? n * p.done / p.total : 0);
          return inner({stage, done, total, p.detail});
        };
      std::vector<int64_t> ids;
      for (size_t row : b.rows) ids.push_back(seed_of.at(row));
      auto r = ganinv::invert(g, b.images, o, nullptr, per_target, {}, 0, ids);
      at::Tensor e;
      torch::NoGradGuard ng;
      auto err = (r.recon - b.images).pow(2).flatten(1).mean(1);
      if (embedder) {  // embedded a chunk at a time: the same batches whatever the shard
        std::vector<at::Tensor> es;
        for (int64_t a = 0; a < r.recon.size(0); a += per_chunk)
          es.push_back(embedder->embed(r.recon.slice(0, a, std::min(r.recon.size(0), a + per_chunk))));
        e = torch::cat(es);
      }
      out.nan_resets += r.nan_resets;
      mse.push_back(err);
      lat.push_back(r.latents.detach().flatten(1));
      if (embedder) remb.push_back(e);
      if (cache) {
        std::vector<at::Tensor> cols = {torch::tensor(std::vector<int64_t>(b.rows.begin(), b.rows.end())).to(torch::kFloat64).unsqueeze(1),
                                        err.to(torch::kFloat64).unsqueeze(1), r.latents.detach().flatten(1).to(torch::kFloat64)};
        if (embedder) cols.push_back(e.to(torch::kFloat64));
        cache->save(name, torch::cat(cols, 1));
      }
    }
    out.rows.insert(out.rows.end(), b.rows.begin(), b.rows.end());
    report_progress(inner, {stage, int64_t(out.rows.size()), total, ""});
  }
  out.skipped = stream.skipped();
  const auto D = latent_numel(g, o.latent);
  out.mse = mse.empty() ? torch::empty({0}) : torch::cat(mse);
  out.latents = lat.empty() ? torch::empty({0, D}) : torch::cat(lat);
  if (embedder) out.recon_emb = remb.empty() ? torch::empty({0, embedder->dim()}) : torch::cat(remb);
  return out;
}

Exposure exposure(const at::Tensor& probes, const at::Tensor& gallery, double threshold) {
  torch::NoGradGuard ng;
  RW_CHECK(probes.dim() == 2 && gallery.dim() == 2 && probes.size(0) == gallery.size(0) && probes.size(1) == gallery.size(1),
           Internal, "exposure: probes ", probes.sizes(), " and gallery ", gallery.sizes(), " must both be [n, d]");
  return exposure_of(torch::mm(probes.to(torch::kFloat32), gallery.to(torch::kFloat32).t()), threshold);
}

Exposure exposure_of(const at::Tensor& similarities, double threshold) {
  torch::NoGradGuard ng;
  RW_CHECK(similarities.dim() == 2 && similarities.size(0) == similarities.size(1), Internal,
           "exposure: similarities must be [n, n], got ", similarities.sizes());
  Exposure out;
  const int64_t n = similarities.size(0);
  if (n == 0) return out;
  auto sim = similarities.to(torch::kFloat64);
  auto own = sim.diagonal().clone();
  auto best = sim.argmax(1);
  auto others = sim.clone();
  others.diagonal().fill_(-std::numeric_limits<double>::infinity());
  auto other_best = n > 1 ? std::get<0>(others.max(1)) : torch::full({n}, -2.0, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    const double s_own = own[i].item<double>();
    const bool ex = best[i].item<int64_t>() == i && s_own > threshold;
    const bool ctl = other_best[i].item<double>() > threshold;
    out.exposed.push_back(ex);
    out.control.push_back(ctl);
    out.own.push_back(s_own);
    out.n_exposed += ex;
    out.n_control += ctl;
  }
  return out;
}

DomainFit domain_fit(const at::Tensor& sample_emb, const at::Tensor& image_emb, uint64_t seed, int64_t cap) {
  torch::NoGradGuard ng;
  DomainFit f;
  auto draw = [&](const at::Tensor& t, uint64_t salt) {
    if (t.size(0) <= cap) return t.to(torch::kFloat32);
    auto gen = at::detail::createCPUGenerator(mix_seed(seed, salt));
    return t.index_select(0, torch::randperm(t.size(0), gen).slice(0, 0, cap)).to(torch::kFloat32);
  };
  auto s = draw(sample_emb, 0xF17A), d = draw(image_emb, 0xF17B);
  f.samples = s.size(0);
  f.images = d.size(0);
  if (f.samples < 2 || f.images < 1) return f;
  auto ss = torch::mm(s, s.t());
  ss.diagonal().fill_(-2);
  f.sample_to_sample = mia::median(to_vector(std::get<0>(ss.max(1))));
  f.image_to_sample = mia::median(to_vector(std::get<0>(torch::mm(d, s.t()).max(1))));
  std::vector<std::vector<double>> feats;
  std::vector<int> lab;
  for (const auto* t : {&s, &d}) {
    auto c = t->to(torch::kFloat64).contiguous();
    for (int64_t i = 0; i < c.size(0); ++i) {
      const double* p = c[i].data_ptr<double>();
      feats.emplace_back(p, p + c.size(1));
      lab.push_back(t == &d);
    }
  }
  f.probe = mia::blind_baseline(feats, lab, 5, 200, seed);
  return f;
}

at::Tensor image_statistics(const at::Tensor& images) {
  torch::NoGradGuard ng;
  RW_CHECK(images.dim() == 4 && images.size(2) >= 3 && images.size(3) >= 3, Internal,
           "image_statistics: need [N, C, H, W] with H, W >= 3, got ", images.sizes());
  auto x = images.to(torch::kFloat64);
  auto g = x.mean(1);  // [N, H, W]
  using torch::indexing::Slice;
  auto dx = (g.index({Slice(), Slice(), Slice(1, torch::indexing::None)}) - g.index({Slice(), Slice(), Slice(0, -1)})).abs();
  auto dy = (g.index({Slice(), Slice(1, torch::indexing::None), Slice()}) - g.index({Slice(), Slice(0, -1), Slice()})).abs();
  auto c = g.index({Slice(), Slice(1, -1), Slice(1, -1)});
  auto lap = (4 * c - g.index({Slice(), Slice(0, -2), Slice(1, -1)}) - g.index({Slice(), Slice(2, torch::indexing::None), Slice(1, -1)}) -
              g.index({Slice(), Slice(1, -1), Slice(0, -2)}) - g.index({Slice(), Slice(1, -1), Slice(2, torch::indexing::None)}))
                 .abs();
  auto blur = torch::avg_pool2d(g.unsqueeze(1), {3, 3}, {1, 1}, {1, 1}, false, false).squeeze(1);
  auto hf = (g - blur).flatten(1).var(1) / (g.flatten(1).var(1) + 1e-8);
  return torch::cat({x.mean({2, 3}), x.flatten(2).std(2), dx.mean({1, 2}).unsqueeze(1), dy.mean({1, 2}).unsqueeze(1),
                     lap.mean({1, 2}).unsqueeze(1), (x.abs() > 0.98).to(torch::kFloat64).mean({1, 2, 3}).unsqueeze(1),
                     hf.unsqueeze(1)},
                    1);
}

// ------------------------------------------------------------------------------------------------
// sharded pipelines

int64_t next_round(const std::string& stage_dir, int64_t rounds) {
  std::error_code ec;
  for (int64_t r = 1; r <= rounds; ++r)
    if (!std::filesystem::exists(stage_dir + "/round-" + std::to_string(r) + ".json", ec)) return r;
  return 0;
}

nlohmann::json part_fingerprint(nlohmann::json fp, const data::Shard& shard, int64_t round) {
  fp["shard"] = shard.str();
  fp["round"] = round;
  return fp;
}

StageCache open_part(const std::string& dir, const nlohmann::json& fp, const data::Shard& shard, int64_t round) {
  const std::string f = dir + "/fingerprint.json";
  std::error_code ec;
  RW_CHECK(std::filesystem::exists(f, ec), Input, "merge: ", dir, " holds no stages of round ", round, " (", f,
           " is missing): run shard ", shard.str(), " again");
  const std::string have = io::read_file(f);
  const auto want = part_fingerprint(fp, shard, round);
  RW_CHECK(have == io::dump_json(want, 1), Input, "merge: the stages in ", dir, " were made with other options or inputs (",
           fingerprint_difference(have, want), "): rerun shard ", shard.str(), " with this command's options");
  return StageCache(dir, want, true);
}

std::vector<StageCache> open_finished_parts(const std::vector<std::string>& dirs, const nlohmann::json& fp, int64_t round) {
  std::vector<StageCache> parts;
  for (size_t i = 0; i < dirs.size(); ++i) {
    data::Shard s;
    s.index = int64_t(i);
    s.count = int64_t(dirs.size());
    parts.push_back(open_part(dirs[i], fp, s, round));
    nlohmann::json done;
    RW_CHECK(parts.back().load_json("done", &done), Input, "merge: shard ", s.str(), " did not finish round ", round,
             " (", dirs[i], "): run it again (with --resume it continues)");
  }
  return parts;
}

at::Tensor merge_sample_parts(const std::vector<StageCache>& parts, const std::vector<std::string>& dirs, int64_t samples,
                              const std::string& name) {
  const int64_t n = int64_t(parts.size());
  // samples are dealt in blocks of the bank's batch (SampleBank): walk them in order
  std::vector<at::Tensor> ps(static_cast<size_t>(n));
  std::vector<int64_t> want(static_cast<size_t>(n), 0), at_(static_cast<size_t>(n), 0), owner_of;
  for (int64_t k = 0; k < samples; ++k) {
    const int64_t owner = (k / kSampleBatch) % n;
    owner_of.push_back(owner);
    ++want[size_t(owner)];
  }
  for (int64_t i = 0; i < n; ++i) {
    RW_CHECK(parts[size_t(i)].load(name, &ps[size_t(i)]), Input, "merge: ", dirs[size_t(i)],
             " has no ", name, "; rerun that shard");
    RW_CHECK(ps[size_t(i)].dim() == 2 && ps[size_t(i)].size(0) == want[size_t(i)], Input, "merge: ", dirs[size_t(i)],
             " holds ", ps[size_t(i)].size(0), " samples, shard ", i, "/", n, " makes ", want[size_t(i)],
             "; rerun that shard");
  }
  std::vector<at::Tensor> rows;
  for (int64_t k = 0; k < samples; ++k) {
    const size_t p = size_t(owner_of[size_t(k)]);
    rows.push_back(ps[p][at_[p]++]);
  }
  return torch::stack(rows);
}

void merge_recovery_parts(const std::vector<StageCache>& parts, const StageCache& run, const std::string& stage,
                          const ganinv::InvertOptions& o) {
  std::vector<at::Tensor> segs;
  at::Tensor t;
  for (const auto& c : parts)
    for (int64_t k = 0; c.load(stage + "-seg-" + std::to_string(k), &t); ++k) segs.push_back(t.to(torch::kFloat64));
  if (segs.empty()) return;
  auto all = torch::cat(segs);
  all = all.index_select(0, std::get<1>(all.select(1, 0).sort()));
  const int64_t per = recovery_segment_size(o);
  for (int64_t k = 0; k * per < all.size(0); ++k)
    run.save(stage + "-seg-" + std::to_string(k), all.slice(0, k * per, std::min(all.size(0), (k + 1) * per)));
}

}  // namespace rw::audit
