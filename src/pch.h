// Precompiled header for rewind_lib, the CLI and the tests. Heavy, stable headers only.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>
