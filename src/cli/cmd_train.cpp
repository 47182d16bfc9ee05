// rewind train gan | classifier
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdio>

#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "cli.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"
#include "rewind/models/train.h"

namespace fs = std::filesystem;

namespace rw::cli {

namespace {

std::string stem_path(const std::string& out, const std::string& suffix) {
  fs::path p(out);
  return (p.parent_path() / (p.stem().string() + suffix)).string();
}

std::string run_dir_of(const std::string& out) {
  auto parent = fs::path(out).parent_path();
  return parent.empty() ? "." : parent.string();
}

/// `m` without the rows that share an identity, a file or a file's bytes with `exclude` (a reference
/// GAN must not see the targets, copied or renamed ones included); how many were dropped goes to *dropped.
io::Manifest without(io::Manifest m, const io::Manifest& exclude, int64_t* dropped) {
  std::set<std::string> ids, files, contents;
  auto content = [](const std::string& p) {
    try {
      return io::file_content_hash(p);
    } catch (const Error&) {
      return std::string();  // unreadable: the image loader reports it
    }
  };
  std::error_code ec;
  auto canon = [&](const std::string& p) {
    auto c = fs::weakly_canonical(p, ec);
    return ec ? p : c.string();
  };
  for (size_t i = 0; i < exclude.entries.size(); ++i) {
    ids.insert(exclude.entries[i].identity);
    files.insert(canon(exclude.resolve(i)));
    if (auto h = content(exclude.resolve(i)); !h.empty()) contents.insert(h);
  }
  std::vector<io::ManifestEntry> kept;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    if (ids.count(m.entries[i].identity) || files.count(canon(m.resolve(i)))) continue;
    if (auto h = content(m.resolve(i)); !h.empty() && contents.count(h)) continue;
    kept.push_back(m.entries[i]);
  }
  *dropped = int64_t(m.entries.size() - kept.size());
  m.entries = std::move(kept);
  return m;
}

int train_gan_cmd(const Args& args) {
  models::TrainGanOptions o;
  CommonOptions common;
  common.runs_models = false;
  std::string data, exclude;
  po::options_description desc("train gan options");
  desc.add_options()
      ("data", po::value(&data)->required(), "manifest of training images (the GAN's members)")
      ("exclude", po::value(&exclude), "manifest of images this GAN must not see (a reference GAN for membership's "
       "calibrated attacks): rows of --data sharing an identity or a file with it are dropped")
      ("out", po::value(&o.out)->required(), "generator file to write (native); also OUT.disc, OUT.ckpt, <stem>-samples.png")
      ("arch", opt(&o.arch.name), "dcgan28 | dcgan32 | dcgan64 | dcgan128 (image side 28/32/64/128)")
      ("latent-dim", opt(&o.arch.latent_dim), "latent size D")
      ("width", opt(&o.arch.width), "channels of the last hidden layer; cost ~ width^2")
      ("channels", opt(&o.arch.channels), "1 grey | 3 RGB (images are converted)")
      ("steps", opt(&o.steps), "generator updates")
      ("batch", opt(&o.batch), "images per step")
      ("lr", opt(&o.lr), "Adam learning rate")
      ("beta1", opt(&o.beta1), "Adam beta1")
      ("seed", opt(&o.seed), "seed")
      ("checkpoint-every", opt(&o.checkpoint_every), "steps between checkpoints")
      ("sample-every", opt(&o.sample_every), "steps between sample grids")
      ("resume", po::bool_switch(&o.resume), "continue from OUT.ckpt if it exists");
  if (!parse_command("rewind train gan --data MANIFEST --out G.pt [options]", args, desc, common)) return 0;
  const int res = o.arch.resolution();
  io::RunRecord record("train gan");
  record.options() = {{"data", data}, {"exclude", exclude}, {"out", o.out}, {"arch", o.arch.to_json("generator")}, {"steps", o.steps},
                      {"batch", o.batch}, {"lr", o.lr}, {"beta1", o.beta1}, {"seed", o.seed}, {"resume", o.resume}};
  record.set_seed(o.seed);
  const std::string samples_png = stem_path(o.out, "-samples.png");
  const std::string dir = run_dir_of(o.out);
  io::ensure_dir(dir);
  models::TrainResult r;
  run_and_record(record, stem_path(o.out, ".run.json"), [&] {
    auto m = data::open_data(data);
    int64_t dropped = 0;
    if (!exclude.empty()) {
      m = without(std::move(m), data::open_data(exclude), &dropped);
      RW_CHECK(!m.entries.empty(), Input, "every row of ", data, " shares an identity or a file with --exclude ", exclude,
               ": nothing is left to train on");
      log_info("--exclude ", exclude, ": ", dropped, " rows of ", data, " dropped");
      record.results()["excluded_rows"] = dropped;
    }
    auto d = load_images_of(std::move(m), data, o.arch.channels, res, &record);
    record.mark("load");
    log_info("training ", o.arch.name, " on ", d.batch.images.size(0), " images for ", o.steps, " steps");
    r = models::train_gan(d.batch.images, o, progress_fn(), [&](int64_t, const at::Tensor& s) {
      io::save_image(samples_png, io::make_grid(s, 4));
    });
    record.mark("train");
    record.results() = {{"generator", o.out}, {"steps", r.steps}, {"images_per_second", r.images_per_second},
                        {"final_g_loss", r.final_loss}, {"final_d_loss", r.final_aux}, {"samples", samples_png},
                        {"training_images", d.batch.images.size(0)}, {"excluded_rows", dropped}};
  });
  std::cout << "wrote " << o.out << " (" << r.steps << " steps, " << int(r.images_per_second) << " images/s)\n"
            << "  samples: " << samples_png << "\n";
  return 0;
}

/// Class index of each loaded image (from `column`, or the identity), numbering new classes when
/// `grow` (training data) and refusing unknown ones otherwise (held-out data).
at::Tensor class_labels(const LoadedData& d, const std::string& column, std::map<std::string, int64_t>& classes, bool grow) {
  int col = -1;
  if (column != "identity") {
    for (size_t c = 0; c < d.manifest.extra_columns.size(); ++c)
      if (d.manifest.extra_columns[c] == column) col = int(c);
    RW_CHECK(col >= 0, Input, "manifest has no column '", column,
             "' (pass --label-column identity to classify people, or add the column)");
  }
  std::vector<int64_t> y;
  for (size_t i : d.batch.indices) {
    const auto& e = d.manifest.entries[i];
    const std::string& key = col >= 0 ? e.extra[col] : e.identity;
    auto it = classes.find(key);
    if (it == classes.end()) {
      RW_CHECK(grow, Input, "held-out class '", key, "' does not occur in the training data");
      it = classes.emplace(key, int64_t(classes.size())).first;
    }
    y.push_back(it->second);
  }
  return torch::tensor(y, torch::kLong);
}

/// Moves a seeded random `fraction` of (x, y) into (vx, vy).
void hold_out_images(at::Tensor& x, at::Tensor& y, at::Tensor& vx, at::Tensor& vy, double fraction, uint64_t seed) {
  auto perm = torch::randperm(x.size(0), at::detail::createCPUGenerator(seed), torch::kLong);
  int64_t nv = std::max<int64_t>(1, int64_t(fraction * x.size(0)));
  vx = x.index_select(0, perm.slice(0, 0, nv));
  vy = y.index_select(0, perm.slice(0, 0, nv));
  x = x.index_select(0, perm.slice(0, nv));
  y = y.index_select(0, perm.slice(0, nv));
}

/// Held-out identities for the embedder: `val` (disjoint from the training identities) or the last
/// `fraction` of the training identities (x, y lose them).
void hold_out_identities(const std::string& val, const LoadedData& train, at::Tensor& x, at::Tensor& y, at::Tensor& vx,
                         at::Tensor& vy, double fraction, int channels, int res, io::RunRecord& record) {
  if (!val.empty()) {
    std::set<std::string> names;
    for (size_t i : train.batch.indices) names.insert(train.manifest.entries[i].identity);
    auto v = load_manifest_images(val, channels, res, &record);
    for (size_t i : v.batch.indices)
      RW_CHECK(!names.count(v.manifest.entries[i].identity), Input, "held-out manifest ", val, " shares identity '",
               v.manifest.entries[i].identity, "' with the training data; held-out identities must be disjoint");
    vx = v.batch.images;
    vy = torch::tensor(io::identity_labels(v.manifest, v.batch.indices), torch::kLong);
  } else if (fraction > 0) {
    const int64_t k = y.max().item<int64_t>() + 1;
    const int64_t held = std::max<int64_t>(2, int64_t(fraction * double(k)));
    RW_CHECK(k - held >= 2, Input, "too few identities (", k, ") to hold out ", held, "; pass --val or lower --heldout-fraction");
    auto is_val = y.ge(k - held);
    vx = x.index({is_val});
    vy = y.index({is_val}) - (k - held);
    x = x.index({is_val.logical_not()});
    y = y.index({is_val.logical_not()});
  }
}

int train_classifier_cmd(const Args& args) {
  models::TrainClassifierOptions o;
  CommonOptions common;
  common.runs_models = false;
  std::string data, val;
  std::string label_column = "label";
  double val_fraction = 0.1;
  o.arch.outputs = 0;
  po::options_description desc("train classifier options");
  desc.add_options()
      ("data", po::value(&data)->required(), "manifest of training images")
      ("val", po::value(&val), "held-out manifest for accuracy (default: hold out --val-fraction of --data)")
      ("val-fraction", opt(&val_fraction), "fraction held out when --val is absent")
      ("label-column", opt(&label_column),
       "manifest column with the class; 'identity' classifies people")
      ("out", po::value(&o.out)->required(), "classifier file to write (native); also OUT.ckpt")
      ("arch", opt(&o.arch.name), "cnn28 (1x28x28) | cnn32 | cnn64 (3x64x64)")
      ("channels", opt(&o.arch.channels), "1 grey | 3 RGB")
      ("width", opt(&o.arch.width), "channels of the first conv")
      ("epochs", opt(&o.epochs), "passes over the data")
      ("batch", opt(&o.batch), "images per step")
      ("lr", opt(&o.lr), "Adam learning rate (cosine decay)")
      ("seed", opt(&o.seed), "seed")
      ("checkpoint-every", opt(&o.checkpoint_every), "steps between checkpoints")
      ("resume", po::bool_switch(&o.resume), "continue from OUT.ckpt if it exists");
  if (!parse_command("rewind train classifier --data MANIFEST --out C.pt [options]", args, desc, common)) return 0;
  const int res = o.arch.resolution();
  io::RunRecord record("train classifier");
  record.set_seed(o.seed);
  const std::string dir = run_dir_of(o.out);
  io::ensure_dir(dir);
  models::TrainResult r;
  run_and_record(record, stem_path(o.out, ".run.json"), [&] {
    auto train = load_manifest_images(data, o.arch.channels, res, &record);
    std::map<std::string, int64_t> classes;
    // numeric labels keep their value order
    auto x = train.batch.images;
    auto y = class_labels(train, label_column, classes, true);
    at::Tensor vx, vy;
    if (!val.empty()) {
      auto v = load_manifest_images(val, o.arch.channels, res, &record);
      vx = v.batch.images;
      vy = class_labels(v, label_column, classes, false);
    } else if (val_fraction > 0) {
      hold_out_images(x, y, vx, vy, val_fraction, o.seed);
    }
    o.arch.outputs = int64_t(classes.size());
    nlohmann::json names = nlohmann::json::array();
    std::vector<std::string> by_index(classes.size());
    for (auto& [k, v] : classes) by_index[v] = k;
    for (auto& k : by_index) names.push_back(k);
    o.arch_extra = {{"class_names", names}, {"label_column", label_column}};
    record.options() = {{"data", data}, {"val", val}, {"val_fraction", val_fraction}, {"label_column", label_column},
                        {"out", o.out}, {"arch", o.arch.to_json("classifier")}, {"epochs", o.epochs},
                        {"batch", o.batch}, {"lr", o.lr}, {"seed", o.seed}, {"resume", o.resume}};
    record.mark("load");
    log_info("training ", o.arch.name, " on ", x.size(0), " images, ", classes.size(), " classes, ", o.epochs, " epochs");
    r = models::train_classifier(x, y, vx, vy, o, progress_fn());
    record.mark("train");
    record.results() = {{"classifier", o.out}, {"steps", r.steps}, {"images_per_second", r.images_per_second},
                        {"final_loss", r.final_loss}, {"heldout_accuracy", r.final_aux},
                        {"heldout_images", vx.defined() ? vx.size(0) : 0}, {"classes", classes.size()}};
  });
  std::printf("wrote %s (%lld steps, %.0f images/s)\n  held-out accuracy: %.4f\n", o.out.c_str(),
              (long long)r.steps, r.images_per_second, r.final_aux);
  return 0;
}

int train_embedder_cmd(const Args& args) {
  models::TrainEmbedderOptions o;
  o.arch.name = "cnn64";
  o.arch.channels = 3;
  o.arch.width = 16;
  o.arch.outputs = 128;
  CommonOptions common;
  common.runs_models = false;
  std::string data, val;
  double heldout_fraction = 0.2;
  po::options_description desc("train embedder options");
  desc.add_options()
      ("data", po::value(&data)->required(), "manifest of face images with identities (several images each)")
      ("val", po::value(&val), "manifest of held-out identities for TAR@FAR (default: hold out --heldout-fraction "
       "of --data's identities)")
      ("heldout-fraction", opt(&heldout_fraction),
       "fraction of identities held out (never trained on) when --val is absent")
      ("out", po::value(&o.out)->required(), "embedder file to write (native); also OUT.ckpt")
      ("arch", opt(&o.arch.name), "cnn28 | cnn32 | cnn64 trunk")
      ("channels", opt(&o.arch.channels), "1 grey | 3 RGB")
      ("width", opt(&o.arch.width), "channels of the first conv")
      ("dim", opt(&o.arch.outputs), "embedding dimension")
      ("epochs", opt(&o.epochs), "passes over the data")
      ("batch", opt(&o.batch), "images per step")
      ("lr", opt(&o.lr), "Adam learning rate (cosine decay)")
      ("margin", opt(&o.margin), "CosFace margin m")
      ("scale", opt(&o.scale), "CosFace scale s")
      ("seed", opt(&o.seed), "seed")
      ("checkpoint-every", opt(&o.checkpoint_every), "steps between checkpoints")
      ("resume", po::bool_switch(&o.resume), "continue from OUT.ckpt if it exists");
  if (!parse_command("rewind train embedder --data MANIFEST --out E.pt [options]", args, desc, common)) return 0;
  const int res = o.arch.resolution();
  io::RunRecord record("train embedder");
  record.set_seed(o.seed);
  io::ensure_dir(run_dir_of(o.out));
  models::TrainResult r;
  int64_t train_ids = 0, val_ids_n = 0;
  run_and_record(record, stem_path(o.out, ".run.json"), [&] {
    auto d = load_manifest_images(data, o.arch.channels, res, &record);
    at::Tensor x = d.batch.images, y = torch::tensor(io::identity_labels(d.manifest, d.batch.indices), torch::kLong), vx, vy;
    hold_out_identities(val, d, x, y, vx, vy, heldout_fraction, o.arch.channels, res, record);
    train_ids = y.max().item<int64_t>() + 1;
    val_ids_n = vy.defined() && vy.numel() ? vy.max().item<int64_t>() + 1 : 0;
    record.options() = {{"data", data}, {"val", val}, {"heldout_fraction", heldout_fraction}, {"out", o.out},
                        {"arch", o.arch.to_json("embedder")}, {"epochs", o.epochs}, {"batch", o.batch},
                        {"lr", o.lr}, {"margin", o.margin}, {"scale", o.scale}, {"seed", o.seed}, {"resume", o.resume}};
    record.mark("load");
    log_info("training ", o.arch.name, " embedder on ", x.size(0), " images of ", train_ids, " identities; ",
             val_ids_n, " held-out identities for TAR@FAR=1e-3");
    r = models::train_embedder(x, y, vx, vy, o, progress_fn());
    record.mark("train");
    record.results() = {{"embedder", o.out}, {"steps", r.steps}, {"images_per_second", r.images_per_second},
                        {"final_loss", r.final_loss}, {"heldout_tar_at_far_1e-3", r.final_aux},
                        {"train_identities", train_ids}, {"heldout_identities", val_ids_n}};
  });
  std::printf("wrote %s (%lld steps, %.0f images/s)\n  held-out identities: %lld, TAR at FAR 1e-3: %.4f\n",
              o.out.c_str(), (long long)r.steps, r.images_per_second, (long long)val_ids_n, r.final_aux);
  return 0;
}

}  // namespace

int cmd_train(const Args& args) {
  static const std::vector<Command> cmds = {
      {"gan", "train a DCGAN generator (spectral-norm discriminator, hinge loss)", train_gan_cmd},
      {"classifier", "train a split-able CNN classifier", train_classifier_cmd},
      {"embedder", "train an identity embedder (CosFace) on faces with identities", train_embedder_cmd},
  };
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    auto& os = args.empty() ? std::cerr : std::cout;
    os << "usage: rewind train <model> [options]\n\nmodels:\n";
    for (const auto& c : cmds) os << "  " << c.name << std::string(14 - c.name.size(), ' ') << c.summary << "\n";
    os << "\n'rewind train <model> --help' shows each model's options.\n";
    return args.empty() ? 2 : 0;
  }
  for (const auto& c : cmds)
    if (c.name == args[0]) return c.run(Args(args.begin() + 1, args.end()));
  RW_FAIL(Usage, "unknown model '", args[0], "' for train (try: gan, classifier, embedder)");
}

}  // namespace rw::cli
