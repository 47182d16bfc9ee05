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

/// Seeds LibTorch's global generator (CPU and, when present, CUDA).
void seed_everything(uint64_t seed);

/// splitmix64: a tiny, portable, well-mixed hash used for deterministic per-item seeds.
uint64_t mix_seed(uint64_t a, uint64_t b = 0, uint64_t c = 0);

}  // namespace rw
