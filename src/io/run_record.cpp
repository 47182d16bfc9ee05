#include "rewind/io/run_record.h"

#include <algorithm>
#include <ctime>

#include "rewind/core/build_info.h"
#include "rewind/core/runtime.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/manifest.h"

namespace rw::io {

std::string utc_now_iso() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

RunRecord::RunRecord(std::string command)
    : command_(std::move(command)), started_utc_(utc_now_iso()),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

RunRecord RunRecord::restarted() const {
  RunRecord r(command_);
  r.options_ = options_;
  r.seed_ = seed_;
  r.has_seed_ = has_seed_;
  return r;
}

void RunRecord::mark(const std::string& stage) {
  auto now = std::chrono::steady_clock::now();
  timings_.emplace_back(stage, std::chrono::duration<double>(now - last_).count());
  last_ = now;
}

void RunRecord::add_skip(const std::string& item, const std::string& reason) {
  skips_.emplace_back(item, reason);
}

nlohmann::json build_json() {
  const auto& b = build_info();
  return {{"version", b.version}, {"commit", b.git_commit}, {"build_type", b.build_type},
          {"compiler", b.compiler}, {"torch", b.torch}};
}

nlohmann::json RunRecord::to_json() const {
  nlohmann::json j;
  j["command"] = "rewind " + command_;
  j["started_utc"] = started_utc_;
  j["finished_utc"] = utc_now_iso();
  j["options"] = options_;
  if (has_seed_) j["seed"] = seed_;
  j["build"] = build_json();
  j["device"] = current_device();  // the CLI's --device (models load there)
  if (const auto gpu = device_name(current_device()); !gpu.empty()) j["gpu"] = gpu;
  j["threads"] = num_threads();
  nlohmann::json t = nlohmann::json::object();
  for (const auto& [k, v] : timings_) t[k] = v;
  t["total"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  j["timings_s"] = t;
  j["skipped_count"] = skips_.size();
  nlohmann::json s = nlohmann::json::array();
  for (const auto& [item, why] : skips_) s.push_back({{"item", item}, {"reason", why}});
  j["skipped"] = s;
  j["results"] = results_;
  if (const int64_t n = paths_outside_manifest_folders()) j["manifest_paths_outside_their_folder"] = n;
  return j;
}

std::string dump_json(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

std::string shown(const nlohmann::json& v) {
  std::string s = dump_json(v);
  return s.size() > 32 ? std::string() : s;
}

std::string difference_at(const nlohmann::json& was, const nlohmann::json& now, const std::string& name) {
  if (was == now) return "";
  if (was.is_object() && now.is_object()) {
    for (auto it = now.begin(); it != now.end(); ++it) {
      const std::string k = name.empty() ? it.key() : name + "." + it.key();
      if (!was.contains(it.key())) return k + " was not set, here " + (shown(it.value()).empty() ? "set" : shown(it.value()));
      auto d = difference_at(was[it.key()], it.value(), k);
      if (!d.empty()) return d;
    }
    for (auto it = was.begin(); it != was.end(); ++it)
      if (!now.contains(it.key())) return (name.empty() ? it.key() : name + "." + it.key()) + " was set, here it is not";
  }
  const std::string a = shown(was), b = shown(now);
  return (name.empty() ? std::string("the record") : name) +
         (a.empty() || b.empty() ? std::string(" changed") : " was " + a + ", here " + b);
}

}  // namespace

std::string describe_difference(const nlohmann::json& was, const nlohmann::json& now, bool as_flags) {
  std::string d = difference_at(was, now, "");
  if (!as_flags || d.empty() || !was.is_object() || !now.is_object()) return d;
  // the top-level key names a flag unless it is a hash of data ("*_hash")
  const size_t end = d.find_first_of(". ");
  if (end == std::string::npos || d[end] == '.') return d;  // a nested key is not a flag
  const std::string key = d.substr(0, end);
  if (key.size() > 5 && key.compare(key.size() - 5, 5, "_hash") == 0) return d;
  return flag_for_key(key) + d.substr(end);
}

std::string flag_for_key(const std::string& key) {
  if (key == "reference_generators") return "--reference-generator";
  std::string f = key;
  std::replace(f.begin(), f.end(), '_', '-');
  return "--" + f;
}

void RunRecord::write(const std::string& json_path, const std::string& status) const {
  auto j = to_json();
  j["status"] = status;
  write_file_atomic(json_path, dump_json(j, 2) + "\n");
}

}  // namespace rw::io
