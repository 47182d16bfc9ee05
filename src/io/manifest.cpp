#include "rewind/io/manifest.h"

#include <atomic>

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"

namespace fs = std::filesystem;

namespace rw::io {

std::string Manifest::resolve(size_t i) const {
  RW_ASSERT(i < entries.size());
  fs::path p(entries[i].path);
  if (p.is_absolute() || base_dir.empty()) return p.string();
  return (fs::path(base_dir) / p).lexically_normal().string();
}

size_t Manifest::identity_count() const { return by_identity().size(); }

std::vector<std::pair<std::string, std::vector<size_t>>> Manifest::by_identity() const {
  std::vector<std::pair<std::string, std::vector<size_t>>> groups;
  std::unordered_map<std::string, size_t> where;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto [it, fresh] = where.emplace(entries[i].identity, groups.size());
    if (fresh) groups.push_back({entries[i].identity, {}});
    groups[it->second].second.push_back(i);
  }
  return groups;
}

bool Manifest::has_member_labels() const {
  return std::any_of(entries.begin(), entries.end(), [](const auto& e) { return e.member >= 0; });
}

std::vector<int64_t> identity_labels(const Manifest& m, const std::vector<size_t>& rows) {
  std::unordered_map<std::string, int64_t> where;
  std::vector<int64_t> out;
  out.reserve(rows.size());
  for (size_t r : rows) {
    RW_ASSERT(r < m.entries.size());
    out.push_back(where.emplace(m.entries[r].identity, int64_t(where.size())).first->second);
  }
  return out;
}

namespace {
std::atomic<int64_t> g_outside{0};
}
int64_t paths_outside_manifest_folders() { return g_outside.load(); }

Manifest read_manifest(const std::string& path) {
  RW_CHECK(fs::exists(path), Input, "manifest '", path,
           "' does not exist (make one with `rewind data import` or `rewind data synth-faces`)");
  RW_CHECK(!fs::is_directory(path), Input, "'", path,
           "' is a folder, not a manifest CSV (pass its manifest.csv, or make one with "
           "`rewind data import --root ", path, "`)");
  auto rows = parse_csv(read_file(path), path);
  RW_CHECK(!rows.empty(), Input, "manifest '", path, "' is empty: it needs a header line `path,identity` and one row per image");
  const auto& header = rows[0];
  int c_path = -1, c_id = -1, c_member = -1;
  std::vector<int> extra_cols;
  Manifest m;
  for (size_t c = 0; c < header.size(); ++c) {
    if (header[c] == "path") c_path = int(c);
    else if (header[c] == "identity") c_id = int(c);
    else if (header[c] == "member") c_member = int(c);
    else {
      extra_cols.push_back(int(c));
      m.extra_columns.push_back(header[c]);
    }
  }
  RW_CHECK(c_path >= 0 && c_id >= 0, Input, "manifest '", path,
           "': the first line must be a header naming the columns `path` and `identity` (found: ",
           csv_line(header).substr(0, 120), ")");
  m.base_dir = fs::path(path).parent_path().string();
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    RW_CHECK(row.size() == header.size(), Input, "manifest '", path, "' row ", r + 1, ": has ",
             row.size(), " fields, the header has ", header.size(),
             " (quote fields that contain commas)");
    ManifestEntry e;
    e.path = row[c_path];
    e.identity = row[c_id];
    RW_CHECK(!e.path.empty(), Input, "manifest '", path, "' row ", r + 1, ": empty path");
    // a NUL byte would make the file opened differ from the path recorded
    RW_CHECK(e.path.find('\0') == std::string::npos && row[c_id].find('\0') == std::string::npos, Input, "manifest '",
             path, "' row ", r + 1, ": contains a NUL byte; remove it (the file is damaged or not a text manifest)");
    if (fs::path(e.path).is_absolute() || e.path.rfind("../", 0) == 0 || e.path.find("/../") != std::string::npos) {
      g_outside.fetch_add(1);
      if (m.outside_folder++ == 0)
        log_info("manifest '", path, "' names files outside its folder (first: row ", r + 1, ", ", e.path,
                 "); allowed, and counted in run.json");
    }
    RW_CHECK(!e.identity.empty(), Input, "manifest '", path, "' row ", r + 1,
             ": empty identity for '", e.path, "' (every image needs an identity; use the file name if unknown)");
    if (c_member >= 0) {
      const auto& v = row[c_member];
      if (v == "1" || v == "true" || v == "yes") e.member = 1;
      else if (v == "0" || v == "false" || v == "no") e.member = 0;
      else if (v.empty()) e.member = -1;
      else RW_FAIL(Input, "manifest '", path, "' row ", r + 1, ": member must be 1, 0 or empty, got '", v, "'");
    }
    for (int c : extra_cols) e.extra.push_back(row[c]);
    m.entries.push_back(std::move(e));
  }
  RW_CHECK(!m.entries.empty(), Input, "manifest '", path, "' has a header but no rows");
  return m;
}

void write_manifest(const std::string& path, const Manifest& m) {
  bool with_member = m.has_member_labels();
  CsvRow header{"path", "identity"};
  if (with_member) header.push_back("member");
  for (const auto& c : m.extra_columns) header.push_back(c);
  std::string out = csv_line(header);
  for (const auto& e : m.entries) {
    RW_CHECK(e.extra.size() == m.extra_columns.size(), Internal, "manifest entry '", e.path,
             "' has ", e.extra.size(), " extra values for ", m.extra_columns.size(), " columns");
    CsvRow row{e.path, e.identity};
    if (with_member) row.push_back(e.member < 0 ? "" : std::to_string(e.member));
    row.insert(row.end(), e.extra.begin(), e.extra.end());
    out += csv_line(row);
  }
  write_file_atomic(path, out);
}

std::string relative_to(const std::string& path, const std::string& base) {
  fs::path p = fs::absolute(path).lexically_normal();
  fs::path b = fs::absolute(base.empty() ? "." : base).lexically_normal();
  fs::path r = p.lexically_relative(b);
  if (r.empty()) return p.string();
  return r.string();
}

}  // namespace rw::io
