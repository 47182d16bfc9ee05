#include "rewind/models/native.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "rewind/core/error.h"
#include "rewind/io/atomic_file.h"

namespace fs = std::filesystem;

namespace rw::models {

namespace {
constexpr const char* kArchKey = "rewind_arch";

bool try_load_archive(const std::string& path, torch::serialize::InputArchive& ar, std::string* why) {
  try {
    ar.load_from(path);
    return true;
  } catch (const c10::Error& e) {
    if (why) *why = e.what_without_backtrace();
    return false;
  } catch (const std::exception& e) {  // torch::jit::ErrorReport and friends from a damaged archive (found by fuzz_native_model)
    if (why) *why = e.what();
    return false;
  }
}
}  // namespace

void save_native(const std::string& path, const torch::nn::Module& module, const nlohmann::json& arch) {
  RW_CHECK(arch.contains("kind") && arch.contains("name"), Internal, "arch record needs kind and name");
  torch::serialize::OutputArchive ar;
  for (const auto& p : module.named_parameters(true)) ar.write(p.key(), p.value().detach().cpu());
  for (const auto& b : module.named_buffers(true)) ar.write(b.key(), b.value().detach().cpu(), /*is_buffer=*/true);
  ar.write(kArchKey, c10::IValue(arch.dump()));
  io::write_via_temp(path, [&](const std::string& tmp) {
    ar.save_to(tmp);
    return true;
  });
}

bool is_native(const std::string& path) {
  if (!fs::is_regular_file(path)) return false;
  torch::serialize::InputArchive ar;
  if (!try_load_archive(path, ar, nullptr)) return false;
  c10::IValue v;
  try {
    return ar.try_read(kArchKey, v) && v.isString();
  } catch (const std::exception&) {
    return false;  // damaged: load_* then name the problem
  }
}

nlohmann::json read_native_arch(const std::string& path) {
  RW_CHECK(fs::is_regular_file(path), Model, "model file '", path, "' does not exist");
  torch::serialize::InputArchive ar;
  std::string why;
  RW_CHECK(try_load_archive(path, ar, &why), Model, "'", path,
           "' is not a model file rewind can read (truncated, or not a LibTorch/TorchScript zip): ",
           why.substr(0, 200));
  c10::IValue v;
  bool found = false;
  try {
    found = ar.try_read(kArchKey, v);
  } catch (const std::exception& e) {
    RW_FAIL(Model, "'", path, "': its architecture record is damaged (", std::string(e.what()).substr(0, 160), ")");
  }
  RW_CHECK(found && v.isString(), Model, "'", path,
           "' is a TorchScript file, not a native rewind model (it has no architecture record)");
  try {
    return nlohmann::json::parse(v.toStringRef());
  } catch (const nlohmann::json::exception& e) {
    RW_FAIL(Model, "'", path, "' has a corrupt architecture record: ", e.what());
  }
}

void load_native_weights(const std::string& path, torch::nn::Module& module) {
  torch::serialize::InputArchive ar;
  std::string why;
  RW_CHECK(try_load_archive(path, ar, &why), Model, "cannot read model file '", path, "': ", why.substr(0, 200));
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& key, torch::Tensor& t, bool buffer) {
    torch::Tensor v;
    bool found = false;
    try {
      found = ar.try_read(key, v, buffer);
    } catch (const std::exception& e) {
      RW_FAIL(Model, "model file '", path, "': tensor '", key, "' is damaged (", std::string(e.what()).substr(0, 160),
              "); re-export or retrain the model");
    }
    RW_CHECK(found, Model, "model file '", path, "' lacks tensor '", key,
             "' (the file was made for another architecture or is damaged)");
    RW_CHECK(v.sizes() == t.sizes(), Model, "model file '", path, "': tensor '", key, "' is ", v.sizes(),
             ", the architecture needs ", t.sizes());
    t.copy_(v);
  };
  for (auto& p : module.named_parameters(true)) load(p.key(), p.value(), false);
  for (auto& b : module.named_buffers(true)) load(b.key(), b.value(), true);
}

std::string file_hash(const std::string& path) { return io::file_content_hash(path); }

}  // namespace rw::models
