#include "rewind/io/atomic_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

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

namespace {
// Opens a regular file for reading; Error{kInput} naming it otherwise (a device or a pipe such as
// /dev/zero would be read forever).
std::ifstream open_regular(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  RW_CHECK(fs::exists(st), Input, "cannot read '", path, "': no such file");
  RW_CHECK(fs::is_regular_file(st), Input, "cannot read '", path, "': not a regular file (rewind reads only regular files)");
  std::ifstream in(path, std::ios::binary);
  RW_CHECK(in.good(), Input, "cannot read '", path, "': permission denied");
  return in;
}
}  // namespace

std::string read_file(const std::string& path) {
  auto in = open_regular(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  RW_CHECK(!in.bad(), Input, "cannot read '", path, "': read error");
  return ss.str();
}

void ContentHasher::update(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h_ ^= p[i];
    h_ *= 1099511628211ull;
  }
}

std::string ContentHasher::hex() const {
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h_));
  return out;
}

std::string content_hash(const std::string& bytes) {
  ContentHasher h;
  h.update(bytes.data(), bytes.size());
  return h.hex();
}

std::string file_content_hash(const std::string& path, int64_t* bytes) {
  auto in = open_regular(path);
  ContentHasher h;
  int64_t total = 0;
  std::vector<char> buf(1 << 20);
  while (in.read(buf.data(), std::streamsize(buf.size())) || in.gcount() > 0) {
    h.update(buf.data(), size_t(in.gcount()));
    total += in.gcount();
  }
  RW_CHECK(!in.bad(), Input, "cannot read '", path, "': read error");
  if (bytes) *bytes = total;
  return h.hex();
}

FileLock::FileLock(const std::string& path, const std::string& what) {
  parent_dirs(path);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  RW_CHECK(fd_ >= 0, Input, "cannot create the lock file '", path, "': ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    RW_FAIL(Usage, "another rewind run", n > 0 ? std::string(" (pid ") + std::string(buf, size_t(n)) + ")" : std::string(),
            " is writing to ", what, "; wait for it to finish or choose another output");
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // the pid is only for the message: the lock itself holds
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

void crash_point(const char* name) {
  const char* want = std::getenv("REWIND_CRASH_POINT");
  if (want && std::strcmp(want, name) == 0) {
    std::fprintf(stderr, "rewind: REWIND_CRASH_POINT=%s reached: exiting as if killed\n", name);
    std::_Exit(137);
  }
}

}  // namespace rw::io
