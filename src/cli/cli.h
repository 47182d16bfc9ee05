// Private to the CLI: the shared frame every subcommand uses.
#pragma once

#include <boost/program_options.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rewind/core/progress.h"
#include "rewind/io/run_record.h"

namespace rw::cli {

namespace po = boost::program_options;

using Args = std::vector<std::string>;

/// Options every subcommand accepts.
struct CommonOptions {
  int threads = 0;      ///< 0 = all cores
  bool quiet = false;   ///< no progress, no info lines
  bool help = false;
};

/// Parses `args` against `desc` (+ the common options). Prints help and returns false when --help
/// was given; throws po::error on bad usage. Applies --threads and --quiet.
bool parse_command(const std::string& usage, const Args& args, po::options_description& desc,
                   CommonOptions& common, const po::positional_options_description* pos = nullptr);

/// The progress reporter for this process: draws on stderr when it is a terminal and not --quiet.
ProgressFn progress_fn();
void progress_done();

/// Writes run.json with status from the exception in flight (or "ok"), then rethrows if any.
/// Use: run_and_record(record, out_dir, [&]{ ... work ... });
void run_and_record(io::RunRecord& record, const std::string& out_dir, const std::function<void()>& work);

struct Command {
  std::string name;
  std::string summary;
  std::function<int(const Args&)> run;
};

int cmd_data(const Args& args);

}  // namespace rw::cli
