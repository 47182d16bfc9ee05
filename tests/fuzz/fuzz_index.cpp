// The identity-index loader, two ways.
//
// Default (what CI runs): the bytes are the folder's manifest.json beside a valid index.faiss and
// items.csv. When they parse as JSON their checksum is recomputed, so rewind's own manifest
// handling (files, sizes, hashes, generation, calibration, options, every type) sees arbitrary
// structures, not only checksum mismatches; FAISS reads only bytes whose hash matched.
//
// REWIND_FUZZ_INDEX_RAW=1: the bytes are index.faiss under a manifest without hashes (an older
// rewind's, or --skip-hash-check), so FAISS's own reader and rewind's structure checks see every
// byte. FAISS 1.7.3's reader leaks the half-read index on each failure and divides by a field of
// PQ files (SIGFPE in ProductQuantizer::set_derived_values when M = 0), found this way; neither is
// rewind's code, so this mode is for manual runs (with ASAN off: see CMakeLists.txt).
#include <sys/resource.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "rewind/identity/index.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/run_record.h"

namespace {

bool raw_mode() {
  static const bool raw = std::getenv("REWIND_FUZZ_INDEX_RAW") != nullptr;
  return raw;
}

// A valid Flat index of 300 vectors in `dir` (its manifest is what the fuzzer replaces).
void build_index(const std::string& dir, const std::string& factory) {
  torch::manual_seed(2);
  auto x = torch::nn::functional::normalize(torch::randn({300, 8}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  std::vector<rw::identity::Item> items;
  for (int i = 0; i < 300; ++i) items.push_back({"p" + std::to_string(i % 7), "x.png", "f"});
  rw::identity::IndexOptions o;
  o.factory = factory;
  o.fars = {1e-1, 1e-2};
  rw::identity::IdentityIndex ix(8, o);
  ix.add(x, items);
  ix.calibrate();
  ix.save(dir);
}

void write(const std::string& path, const std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

void search_it(const std::string& dir) {
  try {
    auto ix = rw::identity::IdentityIndex::load(dir);
    auto q = torch::nn::functional::normalize(torch::ones({2, 8}), torch::nn::functional::NormalizeFuncOptions().dim(1));
    (void)ix.search(q, 3);
    for (const auto& p : ix.calibration().points) (void)ix.search_threshold(p.far);
    (void)ix.manifest();
  } catch (const rw::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  if (raw_mode()) {  // cap the address space: FAISS's allocations from damaged fields then fail
    long long pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    struct rlimit lim {};
    getrlimit(RLIMIT_AS, &lim);
    lim.rlim_cur = rlim_t(pages * sysconf(_SC_PAGESIZE) + (1ll << 30));
    setrlimit(RLIMIT_AS, &lim);
  }
  rw::fuzz::maybe_write_seeds(argc, argv, [](const std::string& d) {
    for (const char* factory : {"Flat", "HNSW8", "IVF2,Flat"}) {
      const std::string tmp = d + "/tmp";
      build_index(tmp, factory);
      std::string name = factory;
      for (auto& c : name) if (c == ',') c = '_';
      std::filesystem::rename(tmp + "/manifest.json", d + "/" + name + ".json");
      std::filesystem::remove_all(tmp);
    }
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  if (raw_mode()) {
    for (size_t i = 0; i + 4 <= size; ++i)  // FAISS's PQ reader can divide by zero (above)
      if (data[i] == 'I' && data[i + 2] == 'P' && (data[i + 3] == 'Q' || data[i + 3] == 'q')) return 0;
    const auto ipath = rw::fuzz::write_input(data, size, "raw/index.faiss");
    const std::string dir = std::filesystem::path(ipath).parent_path().string();
    int64_t ntotal = 0;  // every FAISS header: fourcc, d (int32), ntotal (int64)
    if (size >= 16) std::memcpy(&ntotal, data + 8, 8);
    if (ntotal < 0 || ntotal > 4096) ntotal = 0;
    std::string items = "id,identity,path,dataset\n";
    for (int64_t i = 0; i < ntotal; ++i) items += std::to_string(i) + ",p" + std::to_string(i % 7) + ",x.png,f\n";
    write(dir + "/items.csv", items);
    std::string factory = "Flat";
    if (size >= 4 && std::memcmp(data, "IHNf", 4) == 0) factory = "HNSW8";
    if (size >= 4 && std::memcmp(data, "IwFl", 4) == 0) factory = "IVF2,Flat";
    const std::string metric = (size > 37 && data[33] == 0) ? "cosine" : "l2";  // header: metric_type at byte 33
    write(dir + "/manifest.json", R"({"format": "rewind-identity-index", "format_version": 1, "dim": 8, "metric": ")" +
                                      metric + R"(", "factory": ")" + factory + R"(", "build_options": {}})");
    try {
      search_it(dir);
    } catch (const std::bad_alloc&) {  // FAISS's leaks filled the cap: not a finding
    }
    return 0;
  }
  // default: a valid index whose manifest is the input
  static const std::string dir = [] {
    const std::string d = std::filesystem::path(rw::fuzz::write_input(nullptr, 0, "ix/.keep")).parent_path().string();
    build_index(d, "HNSW8");
    return d;
  }();
  std::string manifest = bytes;
  try {
    auto j = nlohmann::json::parse(bytes);
    if (j.is_object()) {
      j.erase("checksum");
      j["checksum"] = rw::io::content_hash(rw::io::dump_json(j));
      manifest = rw::io::dump_json(j, 2);
    }
  } catch (const nlohmann::json::exception&) {
  }
  write(dir + "/manifest.json", manifest);
  search_it(dir);
  return 0;
}
