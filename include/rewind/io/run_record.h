// run.json: what made an output folder. Every command that writes a folder writes one, so any
// result can be traced to its options, seed, build, device and timings.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace rw::io {

/// JSON text of `j` for files and reports. Bytes that are not UTF-8 (a Latin-1 file name, an
/// identity from a foreign folder) become U+FFFD instead of throwing, so a run never dies writing
/// its record after its work; `indent` < 0 is compact.
std::string dump_json(const nlohmann::json& j, int indent = -1);

/// The first difference between two records of options or inputs, for an error message: "" when
/// equal, else e.g. "--steps was 200, here 300" or "recovery.lr was 0.05, here 0.1". With
/// `as_flags` a top-level key names its flag (run.json's keys are flags with '_' for '-'); a value
/// longer than 32 characters (a file's hash) is shown as "changed" rather than quoted.
std::string describe_difference(const nlohmann::json& was, const nlohmann::json& now, bool as_flags);

/// The flag that sets a record key: '_' becomes '-' ("per_identity" -> "--per-identity"), and
/// "reference_generators", the list of a flag given once per file, is "--reference-generator".
std::string flag_for_key(const std::string& key);

class RunRecord {
 public:
  /// `command` is the full subcommand, e.g. "data synth-faces".
  explicit RunRecord(std::string command);

  nlohmann::json& options() { return options_; }   ///< resolved options, set by the command
  nlohmann::json& results() { return results_; }   ///< counts, metrics, output paths
  void set_seed(uint64_t seed) { seed_ = seed; has_seed_ = true; }
  /// Records the seconds since the previous mark (or since construction) under `stage`.
  void mark(const std::string& stage);
  /// Adds a skipped item (path + reason) to the record.
  void add_skip(const std::string& item, const std::string& reason);
  size_t skipped() const { return skips_.size(); }

  /// A new record of the same command, options and seed, started now (a merge's record).
  RunRecord restarted() const;

  nlohmann::json to_json() const;
  /// Writes the record to `json_path` atomically (status "ok", "cancelled" or "failed").
  /// Folders of outputs use DIR/run.json; a single-file output F uses F's stem + ".run.json".
  void write(const std::string& json_path, const std::string& status = "ok") const;

 private:
  std::string command_;
  nlohmann::json options_ = nlohmann::json::object();
  nlohmann::json results_ = nlohmann::json::object();
  uint64_t seed_ = 0;
  bool has_seed_ = false;
  std::string started_utc_;
  std::chrono::steady_clock::time_point start_, last_;
  std::vector<std::pair<std::string, double>> timings_;
  std::vector<std::pair<std::string, std::string>> skips_;
};

/// What built this binary, as run.json records it: version, commit, build type, compiler, torch.
nlohmann::json build_json();

/// "2026-11-27T07:49:36Z"
std::string utc_now_iso();

}  // namespace rw::io
