// The identity-index loader: the bytes are index.faiss of a folder whose manifest has no content
// hashes (an older rewind's, or --skip-hash-check), so FAISS's reader and rewind's structure
// checks see every byte; whatever loads is then searched.
#include <torch/torch.h>

#include <cstring>

#include "fuzz_util.h"
#include "rewind/identity/index.h"
#include "rewind/io/atomic_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto ipath = rw::fuzz::write_input(data, size, "ix/index.faiss");
  const std::string dir = std::filesystem::path(ipath).parent_path().string();
  // every FAISS index header starts: fourcc, d (int32), ntotal (int64); items.csv lists ntotal rows
  int64_t ntotal = 0;
  if (size >= 16) std::memcpy(&ntotal, data + 8, 8);
  if (ntotal < 0 || ntotal > 4096) ntotal = 0;
  std::string items = "id,identity,path,dataset\n";
  for (int64_t i = 0; i < ntotal; ++i) items += std::to_string(i) + ",p" + std::to_string(i % 7) + ",x.png,f\n";
  std::FILE* f = std::fopen((dir + "/items.csv").c_str(), "wb");
  std::fwrite(items.data(), 1, items.size(), f);
  std::fclose(f);
  // the factory the manifest claims follows the file's fourcc, so the type check passes and the
  // structure checks run
  std::string factory = "Flat";
  if (size >= 4 && std::memcmp(data, "IHNf", 4) == 0) factory = "HNSW8";
  if (size >= 4 && std::memcmp(data, "IwFl", 4) == 0) factory = "IVF2,Flat";
  if (size >= 4 && std::memcmp(data, "IxPq", 4) == 0) factory = "PQ4";
  const std::string metric = (size > 37 && data[33] == 0) ? "cosine" : "l2";  // header: metric_type at byte 33
  const std::string manifest = R"({"format": "rewind-identity-index", "format_version": 1, "dim": 8, "metric": ")" +
                               metric + R"(", "factory": ")" + factory + R"(", "build_options": {}})";
  f = std::fopen((dir + "/manifest.json").c_str(), "wb");
  std::fwrite(manifest.data(), 1, manifest.size(), f);
  std::fclose(f);
  try {
    auto ix = rw::identity::IdentityIndex::load(dir);
    auto q = torch::nn::functional::normalize(torch::ones({2, 8}), torch::nn::functional::NormalizeFuncOptions().dim(1));
    (void)ix.search(q, 3);
  } catch (const rw::Error&) {
  }
  return 0;
}
