// Sharded runs: which shard this process is, where its part goes, and how the parts are checked
// before they are merged. MPI (optional, REWIND_WITH_MPI) lives only here.
//
// A sharded command writes OUT/part-I-of-N/ (its outputs and its own run.json, which records the
// shard); the same command with --merge (or rank 0 of an MPI run, once every rank is done) checks
// that all N parts are there, finished, and made by the same command, options and build, then
// combines them into OUT as one process would have written it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rewind/dist/shard.h"

namespace rw::dist {

/// The shard of this process. `flag` is --shard's text: "I/N" (0 <= I < N), or "" for the
/// launcher's environment, read in this order: MPI (OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE,
/// then PMI_RANK / PMI_SIZE), a Slurm job array (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
/// SLURM_ARRAY_TASK_COUNT), Slurm tasks (SLURM_PROCID / SLURM_NTASKS). Nothing set: 0/1 (the
/// whole run). "0/1" forces the whole run whatever the environment. Bad text: Error{kUsage}.
Shard resolve_shard(const std::string& flag);
/// The same, reading the environment through `getenv` (tests).
Shard resolve_shard(const std::string& flag, const std::function<const char*(const char*)>& getenv);

/// OUT/part-I-of-N
std::string part_dir(const std::string& out, const Shard& s);

/// One finished part of a sharded run.
struct Part {
  Shard shard;
  std::string dir;        ///< OUT/part-I-of-N
  nlohmann::json record;  ///< its run.json
};

/// The parts of a sharded run of `command` ("embed", "index build", ...) in `out`, checked: every
/// part-I-of-N folder for one N (the one `count` names when > 0, else the one found), each with
/// a run.json of status "ok", the same command, the same options as `options` (every key but
/// "shard" and "merge"), the same version and commit. Returned in shard order. A missing,
/// unfinished or foreign part is Error{kInput} naming its folder and the fix. With `input_hashes`
/// (the content hashes of the files `options` name, by key, as run.json's results.input_hashes),
/// files are compared by contents: a part that read a file by another path (a copy, another
/// machine's mount) is the same run when its recorded hash is the same, and one that read other
/// contents, under any path, is refused naming the file.
std::vector<Part> collect_parts(const std::string& out, const std::string& command, const nlohmann::json& options,
                                int64_t count = 0, const nlohmann::json& input_hashes = {});

/// The record of the merged run: the parts and the sum of their timings, for the merged run.json.
nlohmann::json parts_summary(const std::vector<Part>& parts);

// --- MPI ------------------------------------------------------------------------------------------

/// Starts MPI when the binary was built with it and the process was launched by mpirun (the
/// environment names a rank); a no-op otherwise. Call once from main.
void init(int* argc, char*** argv);
void finalize();
/// True when MPI is running with more than one rank.
bool mpi_active();
/// MPI only: waits for every rank and returns whether every rank passed ok = true. Without MPI:
/// returns ok.
bool all_ok(bool ok);
/// The rank's index among the ranks on its machine (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID;
/// 0 when unknown): the GPU a rank should use when a machine has several.
int64_t local_rank();
/// "built with MPI (Open MPI v4.1.4)" or "built without MPI".
std::string mpi_description();

}  // namespace rw::dist
