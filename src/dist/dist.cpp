#include "rewind/dist/dist.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>

#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/run_record.h"

#ifdef REWIND_WITH_MPI
#include <mpi.h>
#endif

namespace fs = std::filesystem;

namespace rw::dist {

namespace {

#ifdef REWIND_WITH_MPI
bool g_mpi = false;  // MPI_Init was called (init(), launched by mpirun / srun)
#endif

bool parse_int(const char* s, int64_t* v) {
  if (!s || !*s) return false;
  char* end = nullptr;
  const long long x = std::strtoll(s, &end, 10);
  if (*end != 0 || x < 0) return false;
  *v = int64_t(x);
  return true;
}

Shard checked(int64_t index, int64_t count, const char* source) {
  RW_CHECK(count >= 1 && index >= 0 && index < count, Usage, "shard ", index, "/", count, " from ", source,
           " is not valid: need 0 <= I < N (e.g. --shard 0/4 ... --shard 3/4)");
  Shard s;
  s.index = index;
  s.count = count;
  s.source = source;
  return s;
}

}  // namespace

Shard resolve_shard(const std::string& flag, const std::function<const char*(const char*)>& getenv) {
  if (!flag.empty()) {
    static const std::regex re("^([0-9]{1,9})/([0-9]{1,9})$");
    std::smatch m;
    RW_CHECK(std::regex_match(flag, m, re), Usage, "--shard '", flag,
             "' is not I/N: write e.g. --shard 0/4 for the first of 4 shards (0 <= I < N)");
    return checked(std::stoll(m[1]), std::stoll(m[2]), "--shard");
  }
  struct Pair {
    const char *rank, *size, *name;
  };
  for (const Pair& p : {Pair{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "MPI (OMPI_COMM_WORLD_RANK/SIZE)"},
                        Pair{"PMI_RANK", "PMI_SIZE", "MPI (PMI_RANK/PMI_SIZE)"}}) {
    int64_t r = 0, n = 0;
    if (parse_int(getenv(p.rank), &r) && parse_int(getenv(p.size), &n)) return checked(r, n, p.name);
  }
  {
    int64_t id = 0, count = 0, lo = 0;
    if (parse_int(getenv("SLURM_ARRAY_TASK_ID"), &id) && parse_int(getenv("SLURM_ARRAY_TASK_COUNT"), &count)) {
      if (!parse_int(getenv("SLURM_ARRAY_TASK_MIN"), &lo)) lo = 0;
      RW_CHECK(id >= lo, Usage, "SLURM_ARRAY_TASK_ID ", id, " is below SLURM_ARRAY_TASK_MIN ", lo);
      // an array with a step (--array=0-9:2) does not number its tasks 0..count-1: refuse it
      return checked(id - lo, count, "Slurm array (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT; "
                                     "use --array=0-(N-1) with no step)");
    }
  }
  {
    int64_t r = 0, n = 0;
    if (parse_int(getenv("SLURM_PROCID"), &r) && parse_int(getenv("SLURM_NTASKS"), &n))
      return checked(r, n, "Slurm (SLURM_PROCID/SLURM_NTASKS)");
  }
  return Shard{};
}

Shard resolve_shard(const std::string& flag) {
#ifdef REWIND_WITH_MPI
  if (flag.empty() && g_mpi) {  // MPI itself knows best (srun with PMIx sets no OMPI_* variables)
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) return checked(rank, size, "MPI (MPI_Comm_rank/size)");
  }
#endif
  return resolve_shard(flag, [](const char* k) { return std::getenv(k); });
}

std::string part_dir(const std::string& out, const Shard& s) { return (fs::path(out) / s.name()).string(); }

namespace {
/// The files part `dir` read (`got`, their hashes `got_hashes`) against those this merge reads now
/// (`want`, `want_hashes`), where both hashes are known: other contents are refused, whatever the
/// paths; the same contents take `want`'s spelling (a list when every entry is the same file).
void check_part_files(nlohmann::json& got, const nlohmann::json& want, const nlohmann::json& got_hashes,
                      const nlohmann::json& want_hashes, const std::string& dir) {
  if (!got.is_object() || !want.is_object() || !got_hashes.is_object() || !want_hashes.is_object()) return;
  auto known = [](const nlohmann::json& h) { return h.is_string() && !h.get<std::string>().empty(); };
  for (auto it = got_hashes.begin(); it != got_hashes.end(); ++it) {
    const auto& k = it.key();
    if (!got.contains(k) || !want.contains(k) || !want_hashes.contains(k)) continue;
    const auto &a = it.value(), &b = want_hashes[k];
    auto same_file = [&](const nlohmann::json& ha, const nlohmann::json& hb, const nlohmann::json& pa,
                         const nlohmann::json& pb) {
      if (!known(ha) || !known(hb)) return pa == pb;  // not a file on both sides: the paths decide
      RW_CHECK(ha == hb, Input, "--merge: ", dir, " read ", io::flag_for_key(k), " ", pa.dump(), " with other contents "
               "than ", pb.dump(), " has now: the shards must read the same files; rerun that shard");
      return true;
    };
    if (a.is_array()) {
      if (!b.is_array() || !got[k].is_array() || !want[k].is_array() || a.size() != b.size() ||
          got[k].size() != a.size() || want[k].size() != a.size())
        continue;  // another count of files: the option comparison names it
      bool same = true;
      for (size_t i = 0; i < a.size(); ++i) same = same_file(a[i], b[i], got[k][i], want[k][i]) && same;
      if (same) got[k] = want[k];
    } else if (same_file(a, b, got[k], want[k])) {
      got[k] = want[k];
    }
  }
}
}  // namespace

std::vector<Part> collect_parts(const std::string& out, const std::string& command, const nlohmann::json& options,
                                int64_t count, const nlohmann::json& input_hashes) {
  static const std::regex re("^part-([0-9]{1,9})-of-([0-9]{1,9})$");
  std::map<int64_t, std::map<int64_t, std::string>> found;  // count -> index -> dir
  std::error_code ec;
  if (fs::is_directory(out, ec))
    for (const auto& e : fs::directory_iterator(out, ec)) {
      std::smatch m;
      const std::string name = e.path().filename().string();
      if (e.is_directory() && std::regex_match(name, m, re)) found[std::stoll(m[2])][std::stoll(m[1])] = e.path().string();
    }
  RW_CHECK(!found.empty(), Input, "--merge: ", out, " holds no part-I-of-N folder; run the shards first (the same command with "
           "--shard I/N for each I, or under mpirun)");
  if (count <= 0) {
    RW_CHECK(found.size() == 1, Input, "--merge: ", out, " holds parts of ", found.size(), " different shard counts (",
             found.begin()->first, " and ", found.rbegin()->first, "); remove the parts of the old run");
    count = found.begin()->first;
  }
  RW_CHECK(found.count(count), Input, "--merge: ", out, " holds no part of ", count, " shards");
  const auto& parts = found[count];
  const auto build = io::build_json();
  std::vector<Part> res;
  auto strip = [](nlohmann::json o) {
    if (o.is_object()) {
      o.erase("shard");
      o.erase("merge");
    }
    return o;
  };
  const auto want = strip(options);
  for (int64_t i = 0; i < count; ++i) {
    Shard s = checked(i, count, "the part folders");
    const std::string dir = part_dir(out, s);
    RW_CHECK(parts.count(i), Input, "--merge: part ", dir, " is missing: run shard ", s.str(), " (the same command with --shard ",
             s.str(), ") and merge again");
    const std::string rj = dir + "/run.json";
    RW_CHECK(fs::is_regular_file(rj), Input, "--merge: ", rj, " is missing: shard ", s.str(),
             " did not finish; rerun it (with --resume where the command has it)");
    nlohmann::json rec;
    try {
      rec = nlohmann::json::parse(io::read_file(rj));
    } catch (const nlohmann::json::exception& e) {
      RW_FAIL(Input, "--merge: ", rj, " is not valid JSON (", e.what(), "); rerun shard ", s.str());
    }
    RW_CHECK(rec.value("status", "") == "ok", Input, "--merge: shard ", s.str(), " in ", dir, " ended with status '",
             rec.value("status", "?"), "'", rec.contains("results") && rec["results"].contains("error")
                 ? " (" + rec["results"]["error"].get<std::string>() + ")" : std::string(),
             "; rerun it and merge again");
    RW_CHECK(rec.value("command", "") == "rewind " + command, Input, "--merge: ", dir, " was made by '",
             rec.value("command", "?"), "', not 'rewind ", command, "': it is not a part of this run");
    const auto& sh = rec.value("options", nlohmann::json::object()).value("shard", nlohmann::json());
    RW_CHECK(sh.is_string() && sh.get<std::string>() == s.str(), Input, "--merge: ", rj, " records shard ",
             sh.is_null() ? std::string("none") : sh.dump(), ", not ", s.str(), ": the folder was renamed or copied from another run");
    auto got = strip(rec.value("options", nlohmann::json::object()));
    const auto part_hashes = rec.value("results", nlohmann::json::object()).value("input_hashes", nlohmann::json());
    // every part of this build records the files it read: one without cannot be checked, so it is not trusted
    RW_CHECK(!input_hashes.is_object() || input_hashes.empty() || part_hashes.is_object(), Input, "--merge: ", rj,
             " records no hashes of the files shard ", s.str(), " read (results.input_hashes): it was edited or "
             "damaged; rerun that shard");
    check_part_files(got, want, part_hashes, input_hashes, dir);
    if (got != want) {
      const std::string diff = io::describe_difference(got, want, true);
      RW_FAIL(Input, "--merge: ", dir, " was made with other options (", diff,
              "): rerun that shard with this command's options, or merge with the options the parts were made with");
    }
    const auto& b = rec.value("build", nlohmann::json::object());
    RW_CHECK(b.value("version", "") == build.value("version", "") && b.value("commit", "") == build.value("commit", ""),
             Input, "--merge: ", dir, " was made by rewind ", b.value("version", "?"), " (", b.value("commit", "?"),
             "), this is ", build.value("version", "?"), " (", build.value("commit", "?"),
             "): parts must come from one build; rerun that shard with this binary");
    res.push_back({s, dir, rec});
  }
  return res;
}

nlohmann::json parts_summary(const std::vector<Part>& parts) {
  nlohmann::json list = nlohmann::json::array();
  double total = 0, slowest = 0;
  for (const auto& p : parts) {
    const double t = p.record.value("timings_s", nlohmann::json::object()).value("total", 0.0);
    total += t;
    slowest = std::max(slowest, t);
    list.push_back({{"shard", p.shard.str()}, {"dir", p.dir}, {"started_utc", p.record.value("started_utc", "")},
                    {"seconds", t}, {"threads", p.record.value("threads", 0)},
                    {"skipped_count", p.record.value("skipped_count", 0)}});
  }
  return {{"count", parts.size()}, {"parts", list}, {"seconds_sum", total}, {"seconds_slowest", slowest}};
}

// --- MPI ------------------------------------------------------------------------------------------


void init(int* argc, char*** argv) {
#ifdef REWIND_WITH_MPI
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK")) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    g_mpi = true;
  }
#endif
}

void finalize() {
#ifdef REWIND_WITH_MPI
  if (g_mpi) MPI_Finalize();
  g_mpi = false;
#endif
}

bool mpi_active() {
#ifdef REWIND_WITH_MPI
  if (!g_mpi) return false;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size > 1;
#else
  return false;
#endif
}

bool all_ok(bool ok) {
#ifdef REWIND_WITH_MPI
  if (g_mpi) {
    int mine = ok ? 1 : 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all == 1;
  }
#endif
  return ok;
}

int64_t local_rank() {
  int64_t r = 0;
  for (const char* k : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (parse_int(std::getenv(k), &r)) return r;
  return 0;
}

std::string mpi_description() {
#ifdef REWIND_WITH_MPI
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v, size_t(std::max(0, len)));
  if (auto nl = s.find_first_of("\n,"); nl != std::string::npos) s = s.substr(0, nl);
  return "built with MPI (" + s + ")";
#else
  return "built without MPI";
#endif
}

}  // namespace rw::dist
