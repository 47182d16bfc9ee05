// The manifest: the one dataset format every rewind command reads.
//
//   path,identity[,member][,extra columns...]
//   faces/id0001/0.png,id0001,1
//
// `path` is relative to the manifest's folder (absolute paths are kept as they are). `identity` is
// any non-empty string. `member` is optional: 1 (in the training set), 0 (not), or empty (unknown).
// Extra columns (e.g. Fashion-MNIST's `label`) are kept and written back in order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rw::io {

struct ManifestEntry {
  std::string path;      ///< as written in the file (relative to the manifest folder)
  std::string identity;  ///< non-empty
  int member = -1;       ///< 1 member, 0 non-member, -1 unknown
  std::vector<std::string> extra;  ///< values of Manifest::extra_columns, same order
};

struct Manifest {
  std::string base_dir;                    ///< folder the relative paths hang from
  std::vector<std::string> extra_columns;  ///< names of columns beyond path,identity,member
  std::vector<ManifestEntry> entries;
  int64_t outside_folder = 0;              ///< entries whose path leaves base_dir (absolute or ../): allowed, logged once

  /// Absolute-or-relative-to-cwd path of entry i (base_dir joined with the entry's path).
  std::string resolve(size_t i) const;
  /// Number of distinct identities.
  size_t identity_count() const;
  /// Entries grouped by identity, identities in first-appearance order.
  std::vector<std::pair<std::string, std::vector<size_t>>> by_identity() const;
  bool has_member_labels() const;
};

/// Integer identity label of each of `rows` (entries of `m`): 0, 1, ... numbered in order of first
/// appearance among `rows`. The one identity-to-label mapping (calibration, grouping, accuracy).
std::vector<int64_t> identity_labels(const Manifest& m, const std::vector<size_t>& rows);

/// Reads a manifest. Errors (Error{kInput}) name the file, the line and the fix: missing header
/// columns, empty identity, bad member value, no rows.
Manifest read_manifest(const std::string& path);
/// Entries naming files outside their manifest's folder, over every manifest this process read
/// (run.json records it when not 0).
int64_t paths_outside_manifest_folders();

/// Writes a manifest atomically; entry paths are written as given (make them relative to the
/// manifest's folder first, see relative_to()).
void write_manifest(const std::string& path, const Manifest& m);

/// `path` expressed relative to folder `base` (lexically; falls back to the absolute path).
std::string relative_to(const std::string& path, const std::string& base);

}  // namespace rw::io
