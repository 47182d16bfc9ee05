// Process-wide runtime settings: threads and seeding. Call once at start-up, before any work.
#pragma once

#include <cstdint>
#include <string>

namespace rw {

/// Sets the intra-op threads of LibTorch and OpenMP. n <= 0 means $REWIND_THREADS when it is set
/// to a positive number, else "all cores" (usable_cores()). Debian's libtorch
/// starts with one thread; rewind does not. Returns the number in force.
int init_threads(int n);
/// Cores this process may run on (its CPU affinity: narrowed by mpirun binding, Slurm, taskset):
/// what "all cores" means above.
int usable_cores();
/// Keeps freed memory in the process instead of returning it to the OS after every large tensor
/// (glibc), which removes page faults from tight optimisation loops. Called by init_threads().
void keep_freed_memory();
int num_threads();

/// Chooses the device models run on from now on (process-wide, like the thread count): "auto"
/// (CUDA device local_rank() mod count when this LibTorch has CUDA and a device is visible, else the
/// CPU), "cpu", "cuda"
/// or "cuda:N". Error{kUsage} when CUDA is asked for and there is none, saying why and to use
/// --device cpu. Returns the device in force, canonical: "cpu" or "cuda:N".
std::string select_device(const std::string& spec);
/// This process's rank among the ranks of its node (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID,
/// SLURM_LOCALID, LOCAL_RANK; 0 when none is set): `auto` gives local rank r the GPU r mod count, so the
/// ranks of a multi-GPU node spread over its GPUs.
int local_rank();
/// The device in force: "cpu" until select_device() chose another.
std::string current_device();
/// The GPU's name ("NVIDIA H100 80GB HBM3") for a "cuda:N" device; "" on the CPU.
std::string device_name(const std::string& device);
/// Free and total memory of a device in bytes: CUDA from the driver, the CPU from /proc/meminfo
/// (MemAvailable, MemTotal); {0, 0} when unknown.
struct DeviceMemory {
  int64_t free = 0, total = 0;
};
DeviceMemory device_memory(const std::string& device);

/// Seeds LibTorch's global generator (CPU and, when present, CUDA).
void seed_everything(uint64_t seed);

/// splitmix64: a tiny, portable, well-mixed hash used for deterministic per-item seeds.
uint64_t mix_seed(uint64_t a, uint64_t b = 0, uint64_t c = 0);

}  // namespace rw
