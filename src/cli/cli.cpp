#include "cli.h"

#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "rewind/audit/demo.h"
#include "rewind/core/error.h"
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

bool parse_command(const std::string& usage, const Args& args, po::options_description& desc,
                   CommonOptions& common, const po::positional_options_description* pos) {
  po::options_description general("Common options");
  general.add_options()
      ("threads", opt(&common.threads),
       "intra-op threads for LibTorch and OpenMP; 0 = $REWIND_THREADS if set, else all cores")
      ("quiet,q", po::bool_switch(&common.quiet), "no progress or info on stderr (errors still print)")
      ("help,h", po::bool_switch(&common.help), "show this help");
  po::options_description all;
  all.add(desc).add(general);
  po::variables_map vm;
  auto parser = po::command_line_parser(args).options(all);
  if (pos) parser.positional(*pos);
  po::store(parser.run(), vm);
  if (vm.count("help") && vm["help"].as<bool>()) {
    std::cout << "usage: " << usage << "\n\n" << all << "\n";
    return false;
  }
  po::notify(vm);
  g_quiet = common.quiet;
  if (common.quiet) set_log_level(LogLevel::kWarn);
  init_threads(common.threads);
  return true;
}

ProgressFn progress_fn() {
  if (!g_progress) g_progress = std::make_unique<TerminalProgress>(!g_quiet && ::isatty(2));
  return g_progress->fn();
}

void progress_done() {
  if (g_progress) g_progress->finish();
}

void run_and_record(io::RunRecord& record, const std::string& json_path, const std::function<void()>& work) {
  try {
    work();
    progress_done();
    record.write(json_path, "ok");
  } catch (const Error& e) {
    progress_done();
    record.results()["error"] = e.message();
    try {
      record.write(json_path, e.kind() == ErrorKind::kCancelled ? "cancelled" : "failed");
    } catch (...) {
    }
    throw;
  }
}

std::string demo_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return audit::find_demo_dir(ec ? std::string() : exe.parent_path().string());
}

}  // namespace rw::cli

namespace rw::cli {

LoadedData load_manifest_images(const std::string& manifest, int channels, int size, io::RunRecord* record) {
  LoadedData d;
  d.manifest = io::read_manifest(manifest);
  std::vector<std::string> paths;
  for (size_t i = 0; i < d.manifest.entries.size(); ++i) paths.push_back(d.manifest.resolve(i));
  d.batch = io::load_images(paths, {channels, size, io::ResizeMode::kCenterCrop}, progress_fn());
  progress_done();
  for (const auto& [i, why] : d.batch.skipped) {
    if (record) record->add_skip(paths[i], why);
  }
  if (!d.batch.skipped.empty())
    log_warn(d.batch.skipped.size(), " of ", paths.size(), " images in ", manifest, " skipped; first: ",
             d.batch.skipped.front().second);
  return d;
}

EmbeddedData embed_manifest(models::Embedder& e, const io::Manifest& m, const std::string& crop, int64_t batch,
                            io::RunRecord* record, const std::string& stage) {
  RW_CHECK(batch > 0, Usage, "--batch must be positive");
  auto shape = e.input_shape();
  io::FaceCropper cropper(io::parse_crop_mode(crop), shape.height, shape.channels);
  const int64_t n = int64_t(m.entries.size());
  EmbeddedData out;
  std::vector<at::Tensor> chunks;
  torch::NoGradGuard ng;
  auto progress = progress_fn();
  for (int64_t start = 0; start < n; start += batch) {
    std::vector<at::Tensor> imgs;
    for (int64_t i = start; i < std::min(n, start + batch); ++i) {
      std::string path = m.resolve(size_t(i));
      try {
        bool found = true;
        imgs.push_back(cropper.load(path, &found));
        out.no_face += !found;
        out.rows.push_back(size_t(i));
      } catch (const Error& err) {
        if (err.kind() != ErrorKind::kInput) throw;
        log_warn("skipping ", path, ": ", err.message());
        if (record) record->add_skip(path, err.message());
      }
    }
    if (!imgs.empty()) chunks.push_back(e.embed(torch::stack(imgs)));
    report_progress(progress, {stage, std::min(n, start + batch), n, ""});
  }
  progress_done();
  out.embeddings = chunks.empty() ? torch::empty({0, e.dim()}) : torch::cat(chunks);
  return out;
}

}  // namespace rw::cli
