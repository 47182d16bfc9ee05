// Private to the CLI: the shared frame every subcommand uses.
#pragma once

#include <boost/program_options.hpp>

#include <functional>
#include <memory>
#include <sstream>
#include <type_traits>
#include <string>
#include <vector>

#include "rewind/core/progress.h"
#include "rewind/data/image_stream.h"
#include "rewind/dist/dist.h"
#include "rewind/ganinv/invert.h"
#include "rewind/io/csv.h"
#include "rewind/io/image.h"
#include "rewind/io/manifest.h"
#include "rewind/io/run_record.h"
#include "rewind/models/models.h"

namespace rw::cli {

namespace po = boost::program_options;

using Args = std::vector<std::string>;

/// An option bound to `*p` whose --help default is the field's initial value (floating point shown
/// short: 0.05, not 0.050000000000000003).
template <typename T>
po::typed_value<T>* opt(T* p) {
  if constexpr (std::is_floating_point_v<T>) {
    std::ostringstream os;
    os << *p;
    return po::value(p)->default_value(*p, os.str());
  } else {
    return po::value(p)->default_value(*p);
  }
}

/// Options every subcommand accepts.
struct CommonOptions {
  int threads = 0;      ///< 0 = all cores
  double max_pixels = 0;  ///< decompression-bomb limit per image; 0 = $REWIND_MAX_PIXELS or 50 MP
  bool quiet = false;   ///< no progress, no info lines
  bool help = false;
  std::string device = "auto";  ///< --device: where models run (rw::select_device); auto = CUDA when present
  bool runs_models = true;      ///< false: the command runs no model on a device (data, training: CPU), no --device
};

/// Whether --NAME (or --NAME=VALUE) is among the arguments: a flag the user gave, not a default.
bool flag_given(const Args& args, const std::string& name);

/// Parses `args` against `desc` (+ the common options). Prints help and returns false when --help
/// was given; throws po::error on bad usage (an option renamed for the one vocabulary says its new
/// name). Applies --threads and --quiet.
bool parse_command(const std::string& usage, const Args& args, po::options_description& desc,
                   CommonOptions& common, const po::positional_options_description* pos = nullptr);

/// The progress reporter for this process: draws on stderr when it is a terminal and not --quiet.
ProgressFn progress_fn();
void progress_done();

/// Runs `work`, then writes the run record to `json_path` with status "ok", or "cancelled"/"failed"
/// (and the error) when it throws, and rethrows.
void run_and_record(io::RunRecord& record, const std::string& json_path, const std::function<void()>& work);

/// `--resume` on a folder whose run finished (`unfinished_marker`, a path under `dir`, absent) would
/// start over and replace it: when that run (its run.json, command "rewind COMMAND") was made with
/// other options than `options` it is refused (Error{kUsage}), naming the first option that differs.
/// It is refused too when a file an option names (a manifest, a model: its bytes, not the images a
/// manifest lists) has other contents than the finished run recorded in results.input_hashes.
void refuse_finished_with_other_options(const std::string& dir, const std::string& command, const nlohmann::json& options,
                                        const std::string& unfinished_marker);

/// How `now` differs from the options `was` a run was made with ("" when they agree; else
/// io::describe_difference's text, naming flags). A file an option names is compared by its contents
/// where `had` (that run's input_hashes) holds its hash, however its path is written now; one that is
/// missing now or has other contents is refused at once (Error{kUsage}): "`what` read --flag FILE,
/// which ...", then `why`.
std::string options_difference(nlohmann::json was, const nlohmann::json& had, nlohmann::json now, const std::string& what,
                               const std::string& why);

/// Content hashes of the regular files that `options`' string values (and string arrays) name, by
/// option key ("out" excepted; a folder counts by its manifest.csv, if it has one); run_and_record
/// stores them in run.json's results.input_hashes.
nlohmann::json input_hashes(const nlohmann::json& options);

/// Loads every image of a manifest (bad ones are skipped, logged and recorded in `record`).
struct LoadedData {
  io::Manifest manifest;
  io::ImageBatch batch;  ///< images [N_ok, C, H, W]; batch.indices map rows to manifest entries
};
LoadedData load_manifest_images(const std::string& manifest, int channels, int size, io::RunRecord* record);
/// The same for a manifest already read (`what` names it in messages): the one load-with-skips.
LoadedData load_images_of(io::Manifest m, const std::string& what, int channels, int size, io::RunRecord* record);
/// The same with the images cut by `loader` (e.g. audit::pipeline_loader's --crop).
LoadedData load_images_of(io::Manifest m, const std::string& what, const data::Loader& loader, io::RunRecord* record);

/// Embeddings of every image of a manifest that could be loaded (bad images are skipped, logged
/// and recorded in `record`).
struct EmbeddedData {
  at::Tensor embeddings;        ///< [N_ok, d] L2-normalised
  std::vector<size_t> rows;     ///< manifest entry of each embedding
  int64_t no_face = 0;          ///< detect / dlib modes: images with no face found (skipped)
};
/// --crop's value for an embedder of input `shape`: "auto" is dlib for a 150 px RGB embedder (the
/// face descriptor) in a build with dlib, else none; any other value as given.
std::string resolve_crop(const std::string& crop, const models::ImageShape& shape);
/// Help text of --crop, shared by every command that takes it.
constexpr const char* kCropHelp =
    "auto (dlib for the 150 px face descriptor, else none) | none (whole image) | center (centred square) | "
    "detect (OpenCV Haar, a widened square) | dlib (alias align: dlib's HOG detector, 68 landmarks and dlib's "
    "alignment, what dlib's face network expects)";
/// Help text of the pipelines' --crop (audit, membership, compare): images are cut to the generator's size.
constexpr const char* kPipelineCropHelp =
    "how your images are cut to the generator's size: center (centred square: prepared face crops) | none (whole "
    "image) | detect (OpenCV Haar) | dlib (alias align: real photos, the largest face aligned as dlib does; a "
    "photo without a face is reported and skipped)";
EmbeddedData embed_manifest(models::Embedder& embedder, const io::Manifest& m, const std::string& crop, int64_t batch,
                            io::RunRecord* record, const std::string& stage = "embed", const dist::Shard& shard = {});

/// The skipped items the parts recorded, added to the merged run's record (and their count).
size_t adopt_part_skips(io::RunRecord& record, const std::vector<dist::Part>& parts);
/// Copies results[key] of the first part into `record` for each key (what every part records alike).
void copy_part_results(io::RunRecord& record, const std::vector<dist::Part>& parts, const std::vector<std::string>& keys);

/// Records the content hash of each of `files` (names in the part folder `dir`) in the part's
/// record (results["part_files"]); run_sharded checks them before a merge reads a byte.
void record_part_files(io::RunRecord& record, const std::string& dir, const std::vector<std::string>& files);
/// The hash of a data option's rows (manifest, folder with manifest.csv, or image folder): shards
/// and merges of other rows are then refused as made with other options.
std::string data_rows_hash(const std::string& data);

/// Rows of CSV files made by parts, merged in the order of a numeric column (the manifest row):
/// returns the rows and, for each, (part index, row index within that part).
struct MergedRows {
  std::vector<io::CsvRow> rows;
  std::vector<std::pair<size_t, size_t>> from;
};
MergedRows merge_csv_by(const std::vector<dist::Part>& parts, const std::string& file, const std::string& column,
                        io::CsvRow* header);

/// "mse=1,ssim=0.5,feature=0.1" -> the loss weights on o (the others 0). Unknown names, bad or
/// negative weights, and a loss without an image term are usage errors.
void parse_loss(const std::string& spec, ganinv::InvertOptions& o);

/// The recovery loss as flags: --recovery-loss SPEC --feature-net FILE --feature-layer NAME.
struct RecoveryLoss {
  std::string loss = "mse=1", feature_net, feature_layer;
};
/// --restarts --steps --lr --optimizer --latent --batch --recovery-loss --feature-net
/// --feature-layer bound to a pipeline's latent-recovery options; apply_recovery_loss after parsing.
void add_recovery_flags(po::options_description& desc, ganinv::InvertOptions& o, RecoveryLoss& l);
/// --precision / --wb-precision: fp32 | bf16 | fp16, and fp16 only with a CUDA device in force (Error{kUsage}
/// before any work; whether a given model runs in bf16 is checked when it is loaded).
void check_precision_flag(const std::string& flag, const std::string& p);
/// Parses l.loss into o (after check_precision_flag on o.precision) and loads the feature net it needs.
void apply_recovery_loss(const RecoveryLoss& l, ganinv::InvertOptions& o);
/// The recovery's options (restarts, steps, lr, optimizer, batch, latent space, loss) as run.json options.
nlohmann::json recovery_options(const RecoveryLoss& l, const ganinv::InvertOptions& o);

/// The shipped demo models' folder (see audit::find_demo_dir); "" when not found.
std::string demo_dir();

/// --shard I/N and --merge, shared by every command that can be sharded.
struct ShardFlags {
  std::string shard;   ///< "I/N"; "" = from mpirun / Slurm, else the whole run
  bool merge = false;  ///< combine the finished parts instead of running
};
void add_shard_flags(po::options_description& desc, ShardFlags& f);
/// Whether this run is a shard or a merge (--merge, --shard I/N with N > 1, or the launcher's rank).
bool sharded(const ShardFlags& f);

/// A command that can run as shards: `part` runs the rows of a shard into a folder (OUT itself
/// for a whole run, OUT/part-I-of-N otherwise) and writes `record` as its run.json there;
/// `merge` combines the checked parts into OUT and writes the merged record it is given.
struct Sharded {
  std::string command;     ///< as run.json names it: "embed", "index build"
  std::string out;         ///< the user's --out
  io::RunRecord* record;   ///< the command's record: its options are what the parts must share;
                           ///< a shard adds options["shard"]; a merge replaces it by the merged one
  std::function<void(const std::string& dir, const dist::Shard& shard)> part;
  /// `merged`: a fresh record of the command (options + "merge": true), with the parts' skipped
  /// items and their summary (results["merged"]) already in it.
  std::function<void(const std::vector<dist::Part>& parts, io::RunRecord& merged)> merge;
  bool adopt_skips = true;  ///< false when the merge records the skipped items itself (audit)
};
/// --merge: checks and merges the parts. Else resolves the shard (flag, then the launcher's
/// environment) and runs it; under MPI every rank then waits for the others and rank 0 merges.
/// Returns what ran: the shard (count 1 = whole run) and whether this process merged.
struct ShardedRun {
  dist::Shard shard;
  bool merged = false;
  size_t parts = 0;
};
ShardedRun run_sharded(const ShardFlags& flags, const Sharded& command);

/// A pipeline sharded in rounds (audit, membership). Each call runs this process's shard of the
/// next round into OUT/.rounds/R/part-I-of-N/, or (--merge; under MPI rank 0 once every rank is
/// done) merges that round into the pipeline's stage cache; merging the last round calls
/// `finish` with the merged record (the report). Under MPI all rounds run in one launch.
struct Rounds {
  std::string command, out;  ///< as run.json names it; the user's --out
  io::RunRecord* record;     ///< the command's record (its options are what every part must share)
  int64_t total = 2;
  std::function<int64_t()> next;  ///< the next round to run, 0 when all are merged
  /// runs `shard` of `round`, keeping its stages in `stage_dir`
  std::function<void(const dist::Shard& shard, const std::string& stage_dir, int64_t round)> shard;
  /// merges the round's parts (their stage folders, shard I at position I)
  std::function<void(const std::vector<std::string>& stage_dirs, int64_t round)> merge;
  std::function<void(io::RunRecord& merged)> finish;
};
void run_rounds(const ShardFlags& flags, const Rounds& r);

struct Command {
  std::string name;
  std::string summary;
  std::function<int(const Args&)> run;
};

int cmd_data(const Args& args);
int cmd_train(const Args& args);
int cmd_convert(const Args& args);
int cmd_embed(const Args& args);
int cmd_invert(const Args& args);
int cmd_generate(const Args& args);
int cmd_index(const Args& args);
int cmd_membership(const Args& args);
int cmd_audit(const Args& args);
int cmd_compare(const Args& args);
int cmd_split_attack(const Args& args);

}  // namespace rw::cli
