// `rewind data import`: folder / celeba / flat layouts on disk -> manifest.csv.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/data/datasets.h"

namespace fs = std::filesystem;

namespace rw::data {

bool has_image_extension(const std::string& name) {
  static const std::set<std::string> kExt = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
                                             ".webp", ".pgm", ".ppm", ".pnm"};
  std::string ext = fs::path(name).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return kExt.count(ext) > 0;
}

namespace {

std::vector<fs::path> sorted_entries(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

void import_folder(const fs::path& root, io::Manifest& m, ImportResult& r, int64_t limit) {
  for (const auto& id_dir : sorted_entries(root)) {
    if (!fs::is_directory(id_dir)) continue;
    std::string identity = id_dir.filename().string();
    bool any = false;
    for (const auto& f : sorted_entries(id_dir)) {
      if (limit > 0 && int64_t(m.entries.size()) >= limit) return;
      if (!fs::is_regular_file(f)) continue;
      if (!has_image_extension(f.string())) {
        ++r.skipped;
        continue;
      }
      m.entries.push_back({f.string(), identity, -1, {}});
      any = true;
    }
    r.identities += any;
  }
}

void import_flat(const fs::path& root, io::Manifest& m, ImportResult& r, int64_t limit) {
  for (const auto& f : sorted_entries(root)) {
    if (limit > 0 && int64_t(m.entries.size()) >= limit) return;
    if (!fs::is_regular_file(f)) continue;
    if (!has_image_extension(f.string())) {
      ++r.skipped;
      continue;
    }
    m.entries.push_back({f.string(), f.stem().string(), -1, {}});
    ++r.identities;
  }
}

void import_celeba(const fs::path& root, io::Manifest& m, ImportResult& r, int64_t limit) {
  fs::path list = root / "identity_CelebA.txt";
  if (!fs::exists(list)) list = root / "Anno" / "identity_CelebA.txt";
  RW_CHECK(fs::exists(list), Input, "CelebA layout: '", (root / "identity_CelebA.txt").string(),
           "' not found (it ships in CelebA's Anno/ folder; copy it next to the images or pass the right --root)");
  fs::path img_dir = root;
  for (const char* sub : {"img_align_celeba", "Img/img_align_celeba", "img_celeba"})
    if (fs::is_directory(root / sub)) {
      img_dir = root / sub;
      break;
    }
  std::ifstream in(list);
  std::string line;
  int lineno = 0;
  std::set<std::string> ids;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::istringstream ss(line);
    std::string file, identity;
    RW_CHECK(static_cast<bool>(ss >> file >> identity), Input, list.string(), ":", lineno,
             ": expected '<image file> <identity>', got '", line, "'");
    if (limit > 0 && int64_t(m.entries.size()) >= limit) break;
    fs::path p = img_dir / file;
    if (!fs::exists(p)) {
      if (r.skipped < 5) log_warn("celeba: '", p.string(), "' is listed but missing; skipped");
      ++r.skipped;
      continue;
    }
    m.entries.push_back({p.string(), identity, -1, {}});
    ids.insert(identity);
  }
  r.identities = int64_t(ids.size());
}

}  // namespace

io::Manifest open_data(const std::string& src) {
  if (!fs::is_directory(src)) return io::read_manifest(src);
  if (fs::is_regular_file(fs::path(src) / "manifest.csv")) return io::read_manifest((fs::path(src) / "manifest.csv").string());
  io::Manifest m;
  ImportResult r;
  fs::path root = fs::absolute(src).lexically_normal();
  bool has_subdirs = false;
  for (const auto& e : fs::directory_iterator(root)) has_subdirs |= e.is_directory();
  if (has_subdirs) import_folder(root, m, r, 0);
  else import_flat(root, m, r, 0);
  RW_CHECK(!m.entries.empty(), Input, "no images found in folder '", src,
           "' (expected images, one subfolder per identity, or a manifest.csv)");
  return m;  // absolute paths, base_dir empty
}

ImportResult import_dataset(const ImportOptions& opt) {
  RW_CHECK(!opt.root.empty(), Usage, "import needs --root DIR");
  RW_CHECK(!opt.out.empty(), Usage, "import needs --out manifest.csv");
  RW_CHECK(fs::is_directory(opt.root), Input, "--root '", opt.root, "' is not a folder");
  io::Manifest m;
  ImportResult r;
  fs::path root = fs::absolute(opt.root).lexically_normal();
  if (opt.layout == "folder") import_folder(root, m, r, opt.limit);
  else if (opt.layout == "flat") import_flat(root, m, r, opt.limit);
  else if (opt.layout == "celeba") import_celeba(root, m, r, opt.limit);
  else RW_FAIL(Usage, "--layout must be folder, celeba or flat, got '", opt.layout, "'");
  RW_CHECK(!m.entries.empty(), Input, "no images found under '", opt.root, "' with --layout ", opt.layout,
           opt.layout == "folder" ? " (expected ROOT/<identity>/<image>; for images directly in ROOT use --layout flat)" : "");
  std::string base = fs::absolute(opt.out).parent_path().string();
  for (auto& e : m.entries) e.path = io::relative_to(e.path, base);
  io::write_manifest(opt.out, m);
  r.images = int64_t(m.entries.size());
  return r;
}

}  // namespace rw::data
