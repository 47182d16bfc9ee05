#include "rewind/core/runtime.h"

#include "rewind/core/error.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <sched.h>

#include <cstdlib>
#include <thread>
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
