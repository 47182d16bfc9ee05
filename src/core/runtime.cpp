#include "rewind/core/runtime.h"

#include "rewind/core/error.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <sched.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>
#ifdef REWIND_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace rw {

void keep_freed_memory() {
#if defined(__GLIBC__)
  // glibc serves blocks above a (dynamic) threshold with mmap and gives them back on free, so each
  // optimisation step's fresh activation tensors page-fault again: ~3,500 faults per white-box step
  // on a cnn28 at batch 64, a quarter of the step. Keep blocks up to 32 MiB (glibc's maximum) in
  // the heap and never trim it; peak memory is unchanged, freed memory is reused.
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
#endif
}

int usable_cores() {
  // the cores this process may run on: mpirun's --bind-to, Slurm's cpuset and taskset all narrow
  // it, so N ranks on one machine do not each start a thread per core of the machine
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int init_threads(int n) {
  RW_CHECK(n >= 0, Usage, "--threads must be >= 0 (0 = $REWIND_THREADS if set, else all cores), got ", n);
  keep_freed_memory();
  if (n <= 0) {  // several rewind jobs side by side: REWIND_THREADS=1 each avoids OpenMP spin contention
    if (const char* env = std::getenv("REWIND_THREADS")) n = std::atoi(env);
  }
  if (n <= 0) n = usable_cores();
  at::set_num_threads(n);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  return n;
}

int num_threads() { return at::get_num_threads(); }

namespace {
std::mutex device_mu;
std::string device_in_force = "cpu";

int64_t cuda_devices() {
#ifdef REWIND_WITH_CUDA
  return torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
#else
  return 0;
#endif
}
}  // namespace

int local_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"})
    if (const char* e = std::getenv(v)) {
      const int r = std::atoi(e);
      if (r >= 0) return r;
    }
  return 0;
}

std::string select_device(const std::string& spec) {
  std::string dev;
  RW_CHECK(!spec.empty(), Usage, "--device '': expected cpu, cuda, cuda:N (N a device number) or auto");
  if (spec == "auto") {
    const int64_t n = cuda_devices();
    dev = n > 0 ? "cuda:" + std::to_string(local_rank() % n) : "cpu";
  } else if (spec == "cpu") {
    dev = "cpu";
  } else if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    int64_t index = 0;
    if (spec != "cuda") {  // cuda:N
      const std::string num = spec.substr(5);
      RW_CHECK(!num.empty() && num.find_first_not_of("0123456789") == std::string::npos && num.size() < 4, Usage,
               "--device '", spec, "': expected cpu, cuda, cuda:N (N a device number) or auto");
      index = std::stoll(num);
    }
#ifdef REWIND_WITH_CUDA
    const int64_t n = cuda_devices();
    RW_CHECK(n > 0, Usage, "--device '", spec, "'",
             ": no CUDA device is visible to this process (driver missing, or CUDA_VISIBLE_DEVICES empty); use --device cpu");
    RW_CHECK(index < n, Usage, "--device '", spec, "': this machine has ", n, " CUDA device", n == 1 ? "" : "s",
             " (cuda:0", n > 1 ? "..cuda:" + std::to_string(n - 1) : std::string(), "); use one of them or --device cpu");
#else
    RW_FAIL(Usage, "--device '", spec, "'",
            ": this rewind was built against a LibTorch without CUDA (Debian's libtorch is CPU-only); use --device cpu, "
            "or build against a CUDA LibTorch (README, 'On a GPU')");
#endif
    dev = "cuda:" + std::to_string(index);
  } else {
    RW_FAIL(Usage, "--device '", spec, "': expected cpu, cuda, cuda:N or auto");
  }
  std::lock_guard<std::mutex> lk(device_mu);
  device_in_force = dev;
  return dev;
}

std::string current_device() {
  std::lock_guard<std::mutex> lk(device_mu);
  return device_in_force;
}

std::string device_name(const std::string& device) {
  if (device.rfind("cuda:", 0) != 0) return "";
#ifdef REWIND_WITH_CUDA
  const auto* p = at::cuda::getDeviceProperties(static_cast<int>(std::stoll(device.substr(5))));
  return p ? std::string(p->name) : std::string();
#else
  return "";
#endif
}

DeviceMemory device_memory(const std::string& device) {
  DeviceMemory m;
  if (device.rfind("cuda:", 0) == 0) {
#ifdef REWIND_WITH_CUDA
    const int prev = c10::cuda::current_device();
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(std::stoll(device.substr(5))));
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) == cudaSuccess) m = {int64_t(f), int64_t(t)};
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(prev));
#endif
    return m;
  }
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemAvailable:") m.free = kb * 1024;
    if (key == "MemTotal:") m.total = kb * 1024;
  }
  return m;
}

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) {
  auto sm = [](uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  };
  return sm(sm(sm(a) ^ b) ^ c);
}

}  // namespace rw
