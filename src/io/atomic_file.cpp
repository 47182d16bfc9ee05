#include "rewind/io/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "rewind/core/error.h"

namespace fs = std::filesystem;

namespace rw::io {

namespace {
std::atomic<uint64_t> g_counter{0};

std::string temp_name_for(const std::string& path) {
  fs::path p(path);
  std::string stem = p.stem().string(), ext = p.extension().string();
  fs::path tmp = p.parent_path() /
                 ("." + stem + ".tmp-" + std::to_string(::getpid()) + "-" +
                  std::to_string(g_counter.fetch_add(1)) + ext);
  return tmp.string();
}

void parent_dirs(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) ensure_dir(parent.string());
}
}  // namespace

void ensure_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  RW_CHECK(!ec && fs::is_directory(dir), Input, "cannot create folder '", dir, "': ", ec.message(),
           " (check the path and its permissions)");
}

void write_via_temp(const std::string& path,
                    const std::function<bool(const std::string& tmp)>& writer) {
  parent_dirs(path);
  std::string tmp = temp_name_for(path);
  bool ok = false;
  try {
    ok = writer(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (!ok || !fs::exists(tmp)) {
    std::remove(tmp.c_str());
    RW_FAIL(Input, "could not write '", path, "' (disk full or no permission?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    RW_FAIL(Input, "could not move the finished file into place at '", path, "': ", std::strerror(e));
  }
}

void write_file_atomic(const std::string& path, const std::string& data) {
  write_via_temp(path, [&](const std::string& tmp) {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) return false;
    bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
    ok = (std::fflush(f) == 0) && ok;
    ok = (::fsync(::fileno(f)) == 0) && ok;
    ok = (std::fclose(f) == 0) && ok;
    return ok;
  });
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  RW_CHECK(in.good(), Input, "cannot read '", path, "': ",
           fs::exists(path) ? "permission denied or not a regular file" : "no such file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace rw::io
