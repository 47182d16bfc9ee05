// Native model files: rewind's own nets (trained by `rewind train ...` or converted by
// `rewind convert ...`) are stored as one file holding the weights and the architecture record,
// so `--generator FILE` / `--embedder FILE` / `--classifier FILE` work the same for native and
// TorchScript models.
//
// Format: a LibTorch serialize archive (a zip, like TorchScript files) with the module's parameters
// and buffers under their names, plus the string key "rewind_arch" holding a JSON object:
//   {"kind": "generator"|"discriminator"|"embedder"|"classifier", "name": "dcgan64"|..., ...params}
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace torch::nn {
class Module;
}

namespace rw::models {

/// Writes `module`'s parameters and buffers plus `arch` to `path`, atomically.
void save_native(const std::string& path, const torch::nn::Module& module, const nlohmann::json& arch);

/// True when `path` is a native rewind model file (has "rewind_arch").
bool is_native(const std::string& path);

/// The architecture record. Throws Error{kModel} naming the file when it is not a native model.
nlohmann::json read_native_arch(const std::string& path);

/// Loads parameters and buffers into `module` (which must have been built from the arch record).
/// Throws Error{kModel} naming the file and the first missing or mis-shaped tensor.
void load_native_weights(const std::string& path, torch::nn::Module& module);

/// SHA-256-free content id: hex FNV-1a 64 of the file bytes, used to pin embedders in index manifests.
std::string file_hash(const std::string& path);

}  // namespace rw::models
