#include "cli.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>

#include "rewind/io/atomic_file.h"
#include "rewind/io/image.h"
#include "rewind/audit/demo.h"
#include "rewind/audit/stages.h"
#include "rewind/core/build_info.h"
#include "rewind/core/error.h"
#include "rewind/data/image_stream.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"
#include "rewind/io/face_crop.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace rw::cli {

namespace {
std::unique_ptr<TerminalProgress> g_progress;
bool g_quiet = false;
}  // namespace

static std::string renamed_hint(const std::string& option) {
  // one vocabulary across commands (README, "Option vocabulary"): old names say where they went
  static const std::map<std::string, std::string> renamed = {
      {"--invert-batch", "renamed --batch (latent recovery: targets x restarts per chunk)"},
      {"--batch", "this command's embedder passes are --embed-batch"},
      {"--gan-steps", "renamed --steps (latent recovery, here the gan-prior attack's)"},
      {"--gan-restarts", "renamed --restarts (latent recovery, here the gan-prior attack's)"},
      {"--w-tv", "renamed --wb-tv (white-box inversion)"},
      {"--w-l2", "renamed --wb-l2 (white-box inversion)"},
      {"--w-bn", "renamed --wb-bn (white-box inversion)"}};
  auto it = renamed.find(option);
  return it == renamed.end() ? "" : it->second;
}

bool flag_given(const Args& args, const std::string& name) {
  const std::string f = "--" + name;
  for (const auto& a : args)
    if (a == f || a.rfind(f + "=", 0) == 0) return true;
  return false;
}

bool parse_command(const std::string& usage, const Args& args, po::options_description& desc,
                   CommonOptions& common, const po::positional_options_description* pos) {
  po::options_description general("Common options");
  general.add_options()
      ("threads", opt(&common.threads),
       "intra-op threads for LibTorch and OpenMP; 0 = $REWIND_THREADS if set, else all cores")
      ("quiet,q", po::bool_switch(&common.quiet), "no progress or info on stderr (errors still print)")
      ("max-pixels", opt(&common.max_pixels),
       "refuse images whose header declares more pixels, before decoding; 0 = $REWIND_MAX_PIXELS if set, else 50e6")
      ("help,h", po::bool_switch(&common.help), "show this help");
  if (common.runs_models)
    general.add_options()("device", opt(&common.device),
                          "where the models run: auto (a GPU when this build has CUDA and one is visible: cuda:0, or under "
                          "mpirun / Slurm the node-local rank mod the GPUs; else cpu) | cpu | cuda | cuda:N; run.json "
                          "records it and the GPU's name");
  po::options_description all;
  all.add(desc).add(general);
  po::variables_map vm;
  auto parser = po::command_line_parser(args).options(all);
  if (pos) parser.positional(*pos);
  // seeds are unsigned: the parser would take "-1" as 18446744073709551615
  auto below_zero = [](const std::string& v) {  // "-N" with a digit other than 0 in it ("-0" is 0)
    return v.size() > 1 && v[0] == '-' && std::isdigit(static_cast<unsigned char>(v[1])) &&
           v.find_first_of("123456789") != std::string::npos;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool negative = (a == "--seed" && i + 1 < args.size() && below_zero(args[i + 1])) ||
                          (a.rfind("--seed=", 0) == 0 && below_zero(a.substr(7)));
    RW_CHECK(!negative, Usage, "--seed must be a whole number >= 0, got ", a == "--seed" ? args[i + 1] : a.substr(7));
  }
  try {
    po::store(parser.run(), vm);
  } catch (const po::unknown_option& e) {
    const std::string hint = renamed_hint(e.get_option_name());
    if (hint.empty()) throw;
    RW_FAIL(Usage, "unrecognised option '", e.get_option_name(), "': ", hint);
  }
  if (vm.count("help") && vm["help"].as<bool>()) {
    std::cout << "usage: " << usage << "\n\n" << desc << "\n" << general << "\n";
    return false;
  }
  po::notify(vm);
  g_quiet = common.quiet;
  if (common.quiet) set_log_level(LogLevel::kWarn);
  init_threads(common.threads);
  if (common.runs_models) select_device(common.device);
  RW_CHECK(common.max_pixels >= 0 && std::isfinite(common.max_pixels), Usage, "--max-pixels must be a count >= 0, got ",
           common.max_pixels);
  io::set_max_pixels(uint64_t(common.max_pixels));
  return true;
}

ProgressFn progress_fn() {
  if (!g_progress) g_progress = std::make_unique<TerminalProgress>(!g_quiet && ::isatty(2));
  return g_progress->fn();
}

void progress_done() {
  if (g_progress) g_progress->finish();
}

namespace {
/// The content hash of the file an option value names ("" when it names none): a folder counts by its
/// manifest.csv, or else by the names and sizes of everything under it.
std::string input_hash(const nlohmann::json& v) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!v.is_string() || v.get<std::string>().empty()) return "";
  const std::string f = v.get<std::string>();
  try {
    if (fs::is_directory(f, ec)) {
      if (fs::is_regular_file(f + "/manifest.csv", ec)) return io::file_content_hash(f + "/manifest.csv");
      std::vector<std::string> listing;
      for (auto it = fs::recursive_directory_iterator(f, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (listing.size() >= 2000000) return "";  // not a data folder: left unguarded rather than walked for long
        if (it->is_regular_file(ec))
          listing.push_back(fs::relative(it->path(), f, ec).string() + "\t" + std::to_string(it->file_size(ec)));
      }
      std::sort(listing.begin(), listing.end());
      std::string all;
      for (const auto& l : listing) all += l + "\n";
      return io::content_hash(all);
    }
    return fs::is_regular_file(f, ec) ? io::file_content_hash(f) : "";
  } catch (const Error&) {
    return "";  // unreadable now: the command itself says so
  }
}
}  // namespace

nlohmann::json input_hashes(const nlohmann::json& options) {
  nlohmann::json out = nlohmann::json::object();
  if (!options.is_object()) return out;
  for (auto it = options.begin(); it != options.end(); ++it) {
    if (it.key() == "out") continue;
    if (it.value().is_array()) {
      nlohmann::json hs = nlohmann::json::array();
      bool any = false;
      for (const auto& v : it.value()) {
        hs.push_back(input_hash(v));
        any = any || !hs.back().get<std::string>().empty();
      }
      if (any) out[it.key()] = hs;
    } else if (auto h = input_hash(it.value()); !h.empty()) {
      out[it.key()] = h;
    }
  }
  return out;
}

void refuse_finished_with_other_options(const std::string& dir, const std::string& command, const nlohmann::json& options,
                                        const std::string& unfinished_marker) {
  namespace fs = std::filesystem;
  const std::string rj = dir + "/run.json";
  std::error_code ec;
  if (fs::exists(dir + "/" + unfinished_marker, ec) || !fs::is_regular_file(rj, ec)) return;
  nlohmann::json rec;
  try {
    rec = nlohmann::json::parse(io::read_file(rj));
  } catch (const std::exception&) {
    return;  // not a record we can read: nothing to protect it by
  }
  if (!rec.is_object() || rec.value("status", "") != "ok" || rec.value("command", "") != "rewind " + command) return;
  auto was = rec.value("options", nlohmann::json::object()), now = options;
  if (!was.is_object() || !now.is_object()) return;
  for (const char* k : {"out", "merge", "shard"}) was.erase(k), now.erase(k);  // a merged run is the same run
  const std::string why = "; resuming would replace it: choose another --out, or drop --resume to replace it on purpose";
  // records from before input_hashes have none: their paths are compared as written
  const auto had = rec.value("results", nlohmann::json::object()).value("input_hashes", nlohmann::json::object());
  const std::string d = options_difference(was, had, now, "--resume: " + dir + " holds a finished run that", why);
  RW_CHECK(d.empty(), Usage, "--resume: ", dir, " holds a finished run made with other options (", d, ")", why);
}

std::string options_difference(nlohmann::json was, const nlohmann::json& had, nlohmann::json now, const std::string& what,
                               const std::string& why) {
  if (!was.is_object() || !now.is_object()) return io::describe_difference(was, now, true);
  const auto has = input_hashes(now);
  for (auto it = had.begin(); had.is_object() && it != had.end(); ++it) {
    const auto& key = it.key();
    if (!now.contains(key)) continue;  // the option itself is gone: the option comparison names it
    const nlohmann::json cur = has.value(key, nlohmann::json());
    const bool list = it.value().is_array();
    const size_t n = list ? it.value().size() : 1;
    if (list && (!now[key].is_array() || now[key].size() != n || !was.contains(key) || !was[key].is_array() ||
                 was[key].size() != n))
      continue;  // another count of files: an option difference
    bool same = true;
    for (size_t i = 0; i < n; ++i) {
      const auto h = list ? it.value()[i] : it.value();
      const auto path = list ? now[key][i] : now[key];
      const auto old = list ? was[key][i] : was.value(key, nlohmann::json());
      if (!h.is_string() || h.get<std::string>().empty()) {  // not a file then: the values decide
        same = same && path == old;
        continue;
      }
      const auto c = list ? (cur.is_array() && i < cur.size() ? cur[i] : nlohmann::json()) : cur;
      const bool here = c.is_string() && !c.get<std::string>().empty();
      const bool same_path = path.is_string() && old.is_string() &&
                             std::filesystem::path(path.get<std::string>()).lexically_normal() ==
                                 std::filesystem::path(old.get<std::string>()).lexically_normal();
      if (!same_path) {  // another path: the same file when it has the same contents, else another option value
        same = same && here && c == h;
        continue;
      }
      RW_CHECK(here, Usage, what, " read ", io::flag_for_key(key), " ", path.dump(), ", which is missing now", why);
      RW_CHECK(c == h, Usage, what, " read ", io::flag_for_key(key), " ", path.dump(),
               ", which has other contents now (it changed since)", why);
    }
    if (same) was[key] = now[key];  // the same contents: however the paths are written now
  }
  return io::describe_difference(was, now, true);
}

void run_and_record(io::RunRecord& record, const std::string& json_path, const std::function<void()>& work) {
  // one run at a time per output: a second run into the same --out would mix their files
  const auto jp = std::filesystem::path(json_path);
  const auto parent = jp.parent_path().empty() ? std::filesystem::path(".") : jp.parent_path();
  io::FileLock lock((parent / ("." + jp.filename().string() + ".lock")).string(),
                    jp.filename() == "run.json" ? parent.string() : json_path);
  // the files the options name, hashed before the work reads them: what --resume on a finished run checks
  if (!record.results().contains("input_hashes")) record.results()["input_hashes"] = input_hashes(record.options());
  try {
    work();
    progress_done();
    record.write(json_path, "ok");
  } catch (const Error& e) {
    progress_done();
    record.results()["error"] = e.message();
    try {
      // a failed rerun never overwrites the record of a finished run whose outputs are still there:
      // its own record goes beside it (run.failed.json)
      std::string where = json_path;
      std::error_code ec;
      if (std::filesystem::is_regular_file(json_path, ec) &&
          io::read_file(json_path).find("\"status\": \"ok\"") != std::string::npos)
        where = (parent / (jp.stem().string() + ".failed.json")).string();
      record.write(where, e.kind() == ErrorKind::kCancelled ? "cancelled" : "failed");
    } catch (...) {
    }
    throw;
  }
}

/// "mse=1,ssim=0.5,identity=0.1" -> weights on o. Unknown names are usage errors.
void parse_loss(const std::string& spec, ganinv::InvertOptions& o) {
  o.w_mse = o.w_l1 = o.w_ssim = o.w_identity = o.w_prior = o.w_feature = 0;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    std::string name = item.substr(0, eq);
    double w = 1.0;
    if (eq != std::string::npos) {
      try {
        w = std::stod(item.substr(eq + 1));
      } catch (...) {
        RW_FAIL(Usage, "--loss: bad weight in '", item, "' (write name=weight, e.g. mse=1,ssim=0.5)");
      }
    }
    if (name == "mse") o.w_mse = w;
    else if (name == "l1") o.w_l1 = w;
    else if (name == "ssim") o.w_ssim = w;
    else if (name == "identity") o.w_identity = w;
    else if (name == "prior") o.w_prior = w;
    else if (name == "feature") o.w_feature = w;
    else RW_FAIL(Usage, "--loss: unknown term '", name, "' (terms: mse, l1, ssim, identity, prior, feature)");
    RW_CHECK(std::isfinite(w) && w >= 0 && w <= 1e6, Usage, "--loss: the weight in '", item,
             "' must be a finite number from 0 to 1e6");
  }
  RW_CHECK(o.w_mse + o.w_l1 + o.w_ssim + o.w_identity + o.w_feature > 0, Usage,
           "--loss needs at least one image term (mse, l1, ssim, identity or feature)");
}

void add_recovery_flags(po::options_description& desc, ganinv::InvertOptions& o, RecoveryLoss& l) {
  desc.add_options()
      ("restarts", opt(&o.restarts), "latent recovery: random starts per target")
      ("steps", opt(&o.loop.steps), "latent recovery: optimiser steps")
      ("lr", opt(&o.loop.lr), "latent recovery: learning rate")
      ("optimizer", opt(&o.loop.optimizer), "latent recovery: adam | lbfgs")
      ("latent", opt(&o.latent), "latent recovery: z | w | w+ (w, w+: style-based generators; w+ recovers non-members too)")
      ("batch", opt(&o.batch), "latent recovery: targets x restarts per chunk; 0 = auto (64 on CPU; on CUDA the most "
       "that fit the free memory, by a trial step)")
      ("precision", opt(&o.precision), "latent recovery: the generator's arithmetic during the search, fp32 | bf16 | "
       "fp16 (CUDA only); on the CPU bf16 pays off for compiled generators; errors reported in fp32")
      ("recovery-loss", opt(&l.loss), "latent recovery: weighted terms as invert's --loss (mse, l1, ssim, feature, ...)")
      ("feature-net", po::value(&l.feature_net), "latent recovery: network of the feature term (face descriptor, classifier "
       "or discriminator)")
      ("feature-layer", po::value(&l.feature_layer), "latent recovery: its layer (face descriptor: conv32 ... conv256_out; "
       "discriminator: block1 ...; classifier: a split point)");
}

nlohmann::json recovery_options(const RecoveryLoss& l, const ganinv::InvertOptions& o) {
  return {{"restarts", o.restarts}, {"steps", o.loop.steps}, {"lr", o.loop.lr}, {"optimizer", o.loop.optimizer},
          {"batch", o.batch}, {"latent", o.latent}, {"precision", o.precision}, {"recovery_loss", l.loss}, {"feature_net", l.feature_net},
          {"feature_layer", l.feature_layer}};
}

void check_precision_flag(const std::string& flag, const std::string& p) {
  RW_CHECK(p == "fp32" || p == "bf16" || p == "fp16", Usage, flag, " must be fp32, bf16 or fp16 (CUDA only), got '", p, "'");
  RW_CHECK(p != "fp16" || current_device() != "cpu", Usage, flag,
           " fp16: half precision runs on CUDA only (the CPU has no fast half-precision convolutions); use bf16 or fp32");
}

void apply_recovery_loss(const RecoveryLoss& l, ganinv::InvertOptions& o) {
  check_precision_flag("--precision", o.precision);  // before any work (the demo renders its data first)
  parse_loss(l.loss, o);
  RW_CHECK(o.w_identity <= 0, Usage, "--recovery-loss: the identity term is for `rewind invert --embedder`; use mse, l1, "
           "ssim or feature here");
  RW_CHECK(o.w_feature <= 0 || !l.feature_net.empty(), Usage,
           "a feature term needs --feature-net FILE --feature-layer NAME");
  RW_CHECK(o.w_feature > 0 || l.feature_net.empty(), Usage,
           "--feature-net is used by the feature term only: add feature=W to the loss (e.g. mse=1,feature=0.1)");
  if (o.w_feature > 0) o.feature_net = models::load_feature_net(l.feature_net, l.feature_layer);
}

std::string demo_dir() { return audit::find_demo_dir(executable_dir()); }

}  // namespace rw::cli

namespace rw::cli {

namespace {
/// Records and logs the skipped items of a finished stream.
void report_skips(const data::ImageStream& s, const std::string& what, io::RunRecord* record) {
  for (const auto& k : s.skipped())
    if (record) record->add_skip(k.path, k.reason);
  if (!s.skipped().empty())
    log_warn(s.skipped().size(), " of ", s.total(), " images in ", what, " skipped; first: ", s.skipped().front().reason);
}
}  // namespace

LoadedData load_manifest_images(const std::string& manifest, int channels, int size, io::RunRecord* record) {
  return load_images_of(io::read_manifest(manifest), manifest, channels, size, record);
}

LoadedData load_images_of(io::Manifest m, const std::string& what, int channels, int size, io::RunRecord* record) {
  return load_images_of(std::move(m), what, data::image_loader({channels, size, io::ResizeMode::kCenterCrop}), record);
}

LoadedData load_images_of(io::Manifest m, const std::string& what, const data::Loader& loader, io::RunRecord* record) {
  LoadedData d;
  d.manifest = std::move(m);
  const std::string& manifest = what;
  data::StreamOptions so;
  so.stage = "load";
  data::ImageStream s(d.manifest, loader, so, progress_fn());
  auto all = data::load_all(s, manifest);
  progress_done();
  report_skips(s, manifest, record);
  d.batch.images = all.images;
  d.batch.indices = all.rows;
  for (const auto& k : s.skipped()) d.batch.skipped.emplace_back(k.row, k.reason);
  return d;
}

std::string resolve_crop(const std::string& crop, const models::ImageShape& shape) {
  if (crop != "auto") return crop;
  // dlib's face network (face-api's descriptor) wants dlib's own 150 px chips
  return io::dlib_available() && shape.channels == 3 && shape.height == 150 && shape.width == 150 ? "dlib" : "none";
}

EmbeddedData embed_manifest(models::Embedder& e, const io::Manifest& m, const std::string& crop, int64_t batch,
                            io::RunRecord* record, const std::string& stage, const dist::Shard& shard) {
  RW_CHECK(batch > 0, Usage, "--embed-batch must be positive");
  auto shape = e.input_shape();
  const std::string mode = resolve_crop(crop, shape);
  io::FaceCropper cropper(io::parse_crop_mode(mode), shape.height, shape.channels);
  EmbeddedData out;
  int64_t no_face = 0;  // written by the stream's worker thread only, read after it ends
  data::StreamOptions so;
  so.batch = batch;
  so.stage = stage;
  so.shard = shard;
  data::ImageStream s(m, [&](size_t, const std::string& path) {
    bool found = true;
    auto t = cropper.load(path, &found);
    if (!found) {  // reported and skipped, as any unreadable item: a centre crop is not that person's face
      ++no_face;
      RW_FAIL(Input, "no face found in '", path, "' (--crop ", mode, "); skipped: crop the face by hand, or pass "
              "--crop center to use the centre of the image");
    }
    return t;
  }, so, progress_fn());
  auto em = audit::embed_stream(e, s);
  progress_done();
  report_skips(s, stage, record);
  out.no_face = no_face;
  out.rows = std::move(em.rows);
  out.embeddings = em.emb;
  return out;
}

}  // namespace rw::cli
