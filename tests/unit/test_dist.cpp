// dist: which shard a process is, and the checks a merge makes before it trusts the parts.
#include <gtest/gtest.h>

#include <map>

#include "rewind/core/error.h"
#include "rewind/dist/dist.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/run_record.h"
#include "test_util.h"

using namespace rw;

namespace {

dist::Shard from_env(const std::string& flag, const std::map<std::string, std::string>& env) {
  return dist::resolve_shard(flag, [&](const char* k) -> const char* {
    auto it = env.find(k);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::kInternal;  // "did not throw" reads as a failure below
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "(no error)";
}

}  // namespace

TEST(Dist, ShardFlagParsesAndRejectsBadText) {
  auto s = from_env("2/5", {});
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(s.name(), "part-2-of-5");
  EXPECT_TRUE(s.contains(7));
  EXPECT_FALSE(s.contains(8));
  for (const char* bad : {"5/5", "1/0", "-1/3", "a/b", "1/2/3", "1", " 1/2", "1/2 "})
    EXPECT_EQ(kind_of([&] { from_env(bad, {}); }), ErrorKind::kUsage) << bad;
  // the flag wins over the environment; 0/1 forces the whole run under a launcher
  EXPECT_TRUE(from_env("0/1", {{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"}}).whole());
}

TEST(Dist, ShardFromLaunchersInOrder) {
  EXPECT_TRUE(from_env("", {}).whole());
  auto mpi = from_env("", {{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"SLURM_PROCID", "0"},
                           {"SLURM_NTASKS", "1"}});
  EXPECT_EQ(mpi.str(), "3/4");
  EXPECT_NE(std::string(mpi.source).find("OMPI"), std::string::npos);
  EXPECT_EQ(from_env("", {{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}}).str(), "1/2");
  // a job array numbered from its minimum
  EXPECT_EQ(from_env("", {{"SLURM_ARRAY_TASK_ID", "12"}, {"SLURM_ARRAY_TASK_MIN", "10"}, {"SLURM_ARRAY_TASK_COUNT", "4"},
                          {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}})
                .str(),
            "2/4");
  EXPECT_EQ(from_env("", {{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}}).str(), "5/8");
  // an array with a step leaves ids past the count: refused, not a silent overlap
  EXPECT_EQ(kind_of([&] {
              from_env("", {{"SLURM_ARRAY_TASK_ID", "6"}, {"SLURM_ARRAY_TASK_MIN", "0"}, {"SLURM_ARRAY_TASK_COUNT", "4"}});
            }),
            ErrorKind::kUsage);
  // a rank that is not a number is ignored (the next launcher, else the whole run)
  EXPECT_TRUE(from_env("", {{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}}).whole());
}

namespace {

/// A part folder as a command writes it.
void write_part(const std::string& out, int64_t i, int64_t n, nlohmann::json options, const std::string& status = "ok",
                const std::string& command = "embed", const nlohmann::json& input_hashes = nullptr) {
  dist::Shard s;
  s.index = i;
  s.count = n;
  const std::string dir = dist::part_dir(out, s);
  io::ensure_dir(dir);
  options["shard"] = s.str();
  nlohmann::json rec = {{"command", "rewind " + command}, {"options", options}, {"build", io::build_json()},
                        {"status", status}, {"timings_s", {{"total", 1.5}}}, {"threads", 1}};
  if (!input_hashes.is_null()) rec["results"]["input_hashes"] = input_hashes;
  io::write_file_atomic(dir + "/run.json", rec.dump());
}

}  // namespace

TEST(Dist, CollectPartsChecksEveryPart) {
  test::TempDir tmp;
  const std::string out = tmp.path() + "/run";
  const nlohmann::json opts = {{"data", "m.csv"}, {"batch", 64}};
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts); }).find("no part-I-of-N"), std::string::npos);
  write_part(out, 0, 3, opts);
  write_part(out, 2, 3, opts);
  auto missing = message_of([&] { dist::collect_parts(out, "embed", opts); });
  EXPECT_NE(missing.find("part-1-of-3 is missing"), std::string::npos) << missing;
  write_part(out, 1, 3, opts, "failed");
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts); }).find("status 'failed'"), std::string::npos);
  write_part(out, 1, 3, {{"data", "m.csv"}, {"batch", 32}});
  auto foreign = message_of([&] { dist::collect_parts(out, "embed", opts); });
  EXPECT_NE(foreign.find("part-1-of-3 was made with other options (--batch was 32, here 64)"), std::string::npos) << foreign;
  write_part(out, 1, 3, opts, "ok", "invert");
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts); }).find("not a part of this run"), std::string::npos);
  write_part(out, 1, 3, opts);
  auto parts = dist::collect_parts(out, "embed", opts);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[1].shard.str(), "1/3");
  EXPECT_DOUBLE_EQ(dist::parts_summary(parts)["seconds_sum"].get<double>(), 4.5);
  // the merge's own flag does not count as a difference
  auto with_merge = opts;
  with_merge["merge"] = true;
  EXPECT_EQ(dist::collect_parts(out, "embed", with_merge).size(), 3u);
  // parts of two shard counts: ambiguous unless the count is given
  write_part(out, 0, 2, opts);
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts); }).find("different shard counts"), std::string::npos);
  EXPECT_EQ(dist::collect_parts(out, "embed", opts, 3).size(), 3u);
  // a part from another build
  nlohmann::json rec = nlohmann::json::parse(io::read_file(out + "/part-2-of-3/run.json"));
  rec["build"]["commit"] = "0000000";
  io::write_file_atomic(out + "/part-2-of-3/run.json", rec.dump());
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts, 3); }).find("parts must come from one build"),
            std::string::npos);
}

// A part that names a file by another path (another machine's mount) is the same run when the
// hashes it recorded are the merge's; another file behind the same name is not.
TEST(Dist, CollectPartsComparesFilesByContents) {
  test::TempDir tmp;
  const std::string out = tmp.path() + "/run";
  const nlohmann::json opts = {{"data", "/mnt/a/m.csv"}, {"refs", {"/mnt/a/r1.pt", "x"}}, {"batch", 64}};
  const nlohmann::json hashes = {{"data", "h-data"}, {"refs", {"h-r1", ""}}};
  write_part(out, 0, 2, opts, "ok", "embed", hashes);
  write_part(out, 1, 2, {{"data", "/srv/m.csv"}, {"refs", {"/srv/r1.pt", "x"}}, {"batch", 64}}, "ok", "embed", hashes);
  EXPECT_EQ(dist::collect_parts(out, "embed", opts, 0, hashes).size(), 2u);
  // without hashes (an older merge) the paths are compared as written
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts); }).find("other options"), std::string::npos);
  // the same path spelling with other contents, or a list entry that differs: refused
  write_part(out, 1, 2, {{"data", "/srv/m.csv"}, {"refs", {"/mnt/a/r1.pt", "x"}}, {"batch", 64}}, "ok", "embed",
             {{"data", "h-other"}, {"refs", {"h-r1", ""}}});
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts, 0, hashes); }).find("read --data \"/srv/m.csv\" with other contents"),
            std::string::npos);
  // ... and so is the same path whose contents changed between the shards
  write_part(out, 1, 2, opts, "ok", "embed", {{"data", "h-other"}, {"refs", {"h-r1", ""}}});
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts, 0, hashes); }).find("with other contents"), std::string::npos);
  write_part(out, 1, 2, {{"data", "/mnt/a/m.csv"}, {"refs", {"/srv/r1.pt", "y"}}, {"batch", 64}}, "ok", "embed", hashes);
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts, 0, hashes); }).find("other options"), std::string::npos);
  // a part that records no hashes (edited by hand) cannot be checked: refused, not compared by paths
  write_part(out, 1, 2, opts);
  EXPECT_NE(message_of([&] { dist::collect_parts(out, "embed", opts, 0, hashes); }).find("records no hashes"),
            std::string::npos);
}

TEST(Dist, WithoutMpiAllOkIsLocal) {
  if (dist::mpi_active()) GTEST_SKIP() << "running under MPI";
  EXPECT_TRUE(dist::all_ok(true));
  EXPECT_FALSE(dist::all_ok(false));
  EXPECT_FALSE(dist::mpi_description().empty());
}
