#include "cli.h"

#include <unistd.h>

#include <iostream>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/core/runtime.h"

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
       "intra-op threads for LibTorch and OpenMP; 0 = all cores")
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

}  // namespace rw::cli
