// --shard / --merge: the one place a command becomes a sharded run.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli.h"
#include "rewind/core/error.h"
#include "rewind/core/log.h"
#include "rewind/audit/stages.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"

namespace rw::cli {

void add_shard_flags(po::options_description& desc, ShardFlags& f) {
  desc.add_options()
      ("shard", po::value(&f.shard),
       "I/N: do only this part's rows (dealt round-robin in blocks of the command's batch: rows i with "
       "(i / batch) % N == I), into OUT/part-I-of-N/; default: the rank mpirun or Slurm gives "
       "(OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_ARRAY_TASK_ID, SLURM_PROCID), else the whole run; 0/1 forces the whole run")
      ("merge", po::bool_switch(&f.merge),
       "combine the finished OUT/part-I-of-N/ of this same command (same options) into OUT, as one process would have "
       "written it");
}

bool sharded(const ShardFlags& f) { return f.merge || !dist::resolve_shard(f.shard).whole(); }

void record_part_files(io::RunRecord& record, const std::string& dir, const std::vector<std::string>& files) {
  auto& j = record.results()["part_files"];
  for (const auto& f : files) j[f] = io::file_content_hash(dir + "/" + f);
}

std::string data_rows_hash(const std::string& data) { return audit::manifest_hash(data::open_data(data)); }

namespace {
/// A part's files against the hashes its run.json recorded (what a damaged or replaced part file
/// would otherwise merge silently).
void check_part_files(const dist::Part& p) {
  const auto files = p.record.value("results", nlohmann::json::object()).value("part_files", nlohmann::json::object());
  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string path = p.dir + "/" + it.key();
    RW_CHECK(std::filesystem::is_regular_file(path), Input, "--merge: ", path, " is missing; rerun shard ", p.shard.str());
    RW_CHECK(io::file_content_hash(path) == it.value().get<std::string>(), Input, "--merge: ", path,
             " is not the file shard ", p.shard.str(), " wrote (damaged or replaced); rerun that shard");
  }
}

/// After a merge the parts are copies of what OUT now holds (the merged run.json lists them, with
/// their timings): removed, so a sharded run costs the disk of one.
void remove_parts(const std::vector<dist::Part>& parts) {
  std::error_code ec;
  for (const auto& p : parts) std::filesystem::remove_all(p.dir, ec);
}
}  // namespace

ShardedRun run_sharded(const ShardFlags& flags, const Sharded& c) {
  ShardedRun r;
  const nlohmann::json options = c.record->options();
  auto merge = [&](const std::vector<dist::Part>& parts) {
    for (const auto& p : parts) check_part_files(p);
    io::RunRecord merged = c.record->restarted();
    merged.options()["merge"] = true;
    if (c.adopt_skips) adopt_part_skips(merged, parts);
    merged.results()["merged"] = dist::parts_summary(parts);
    c.merge(parts, merged);
    *c.record = merged;
    remove_parts(parts);
  };
  if (flags.merge) {
    RW_CHECK(flags.shard.empty(), Usage, "--merge combines the parts: give it without --shard");
    auto parts = dist::collect_parts(c.out, c.command, options, 0, input_hashes(options));
    merge(parts);
    r.shard.count = int64_t(parts.size());
    r.merged = true;
    r.parts = parts.size();
    return r;
  }
  r.shard = dist::resolve_shard(flags.shard);
  if (r.shard.whole()) {
    c.part(c.out, r.shard);
    return r;
  }
  const std::string dir = dist::part_dir(c.out, r.shard);
  c.record->options()["shard"] = r.shard.str();
  log_info("shard ", r.shard.str(), " (from ", r.shard.source, "): writing ", dir);
  try {
    c.part(dir, r.shard);
  } catch (...) {
    dist::all_ok(false);  // under MPI: the other ranks learn it and do not wait for a merge
    throw;
  }
  if (!dist::mpi_active()) {
    log_info("when all ", r.shard.count, " shards are done: the same command with --merge combines them into ", c.out);
    return r;
  }
  const bool all = dist::all_ok(true);
  if (r.shard.index != 0) return r;
  RW_CHECK(all, Input, "another rank failed, so nothing was merged: its ", c.out,
           "/part-I-of-N/run.json says why; rerun that shard, then the same command with --merge");
  auto parts = dist::collect_parts(c.out, c.command, options, r.shard.count, input_hashes(options));
  merge(parts);
  r.merged = true;
  r.parts = parts.size();
  return r;
}

size_t adopt_part_skips(io::RunRecord& record, const std::vector<dist::Part>& parts) {
  size_t n = 0;
  for (const auto& p : parts)
    for (const auto& k : p.record.value("skipped", nlohmann::json::array())) {
      record.add_skip(k.value("item", ""), k.value("reason", ""));
      ++n;
    }
  return n;
}

void copy_part_results(io::RunRecord& record, const std::vector<dist::Part>& parts, const std::vector<std::string>& keys) {
  if (parts.empty()) return;
  const auto& res = parts[0].record.value("results", nlohmann::json::object());
  for (const auto& k : keys)
    if (res.contains(k)) record.results()[k] = res[k];
}

MergedRows merge_csv_by(const std::vector<dist::Part>& parts, const std::string& file, const std::string& column,
                        io::CsvRow* header) {
  struct Key {
    int64_t key;
    size_t part, row;
  };
  std::vector<Key> keys;
  std::vector<std::vector<io::CsvRow>> all(parts.size());
  for (size_t p = 0; p < parts.size(); ++p) {
    const std::string path = parts[p].dir + "/" + file;
    auto rows = io::parse_csv(io::read_file(path), path);
    RW_CHECK(!rows.empty(), Input, "--merge: ", path, " has no header; rerun shard ", parts[p].shard.str());
    if (p == 0 && header) *header = rows[0];
    RW_CHECK(!header || rows[0] == *header, Input, "--merge: ", path, " has other columns than ", parts[0].dir, "/", file);
    size_t col = 0;
    while (col < rows[0].size() && rows[0][col] != column) ++col;
    RW_CHECK(col < rows[0].size(), Input, "--merge: ", path, " has no column '", column, "'");
    for (size_t r = 1; r < rows.size(); ++r) {
      char* end = nullptr;
      const long long k = rows[r].size() > col ? std::strtoll(rows[r][col].c_str(), &end, 10) : -1;
      RW_CHECK(k >= 0 && end && *end == 0, Input, "--merge: ", path, " line ", r + 1, ": '", column,
               "' is not a row number; rerun shard ", parts[p].shard.str());
      keys.push_back({int64_t(k), p, r - 1});
    }
    rows.erase(rows.begin());
    all[p] = std::move(rows);
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) { return a.key < b.key; });
  MergedRows m;
  for (size_t i = 0; i < keys.size(); ++i) {
    RW_CHECK(i == 0 || keys[i].key != keys[i - 1].key, Input, "--merge: row ", keys[i].key, " appears in two parts (",
             parts[keys[i - 1].part].dir, ", ", parts[keys[i].part].dir, ")");
    m.rows.push_back(all[keys[i].part][keys[i].row]);
    m.from.emplace_back(keys[i].part, keys[i].row);
  }
  return m;
}

namespace {
/// Where a merged round keeps the options its parts were made with (its parts are removed).
std::string round_options_file(const Rounds& r, int64_t round) {
  return r.out + "/.rounds/round-" + std::to_string(round) + "-options.json";
}

nlohmann::json comparable_options(nlohmann::json o) {
  if (o.is_object())
    for (const char* k : {"shard", "merge", "out"}) o.erase(k);
  return o;
}

/// A later round's shard and merge take round 1's options: compared with what round 1's merge kept,
/// so that a shard of other options is refused when it starts, not at the merge after every shard ran.
void check_round_one_options(const Rounds& r, int64_t round, const std::string& shard_flag) {
  const std::string f = round_options_file(r, 1);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(f, ec)) return;  // merged by an older build: the stages' fingerprint still guards
  nlohmann::json was;
  try {
    was = nlohmann::json::parse(io::read_file(f));
  } catch (const std::exception&) {
    return;
  }
  const auto& now = r.record->options();
  auto before = comparable_options(was);
  before.erase("round_shards");
  before.erase("input_hashes");
  // a file round 1 read is compared by its contents, however its path is written now
  const std::string d = options_difference(before, was.value("input_hashes", nlohmann::json::object()),
                                           comparable_options(now),
                                           r.command + " round " + std::to_string(round) + ": round 1 of this sharded run (" + f + ")",
                                           ": " + std::string(audit::kShardedRunAdvice));
  RW_CHECK(d.empty(), Usage, r.command, " round ", round, ": round 1 of this sharded run was made with other options (",
           d, "; ", f, "): ", audit::kShardedRunAdvice);
  // every round deals the rows to the same number of shards (the merge wants one count per round)
  const int64_t shards = was.value("round_shards", int64_t(0));
  if (!shard_flag.empty() && shards > 0) {
    const std::string& sh = shard_flag;
    const size_t slash = sh.find('/');
    RW_CHECK(slash == std::string::npos || sh.substr(slash + 1) == std::to_string(shards), Usage, r.command, " round ",
             round, ": --shard ", sh, ", but round 1 of this sharded run had ", shards, " shards: run --shard I/",
             shards, " (every round has round 1's shard count)");
  }
}

/// One round: this process's shard, or the merge of the round's parts.
void one_round(const ShardFlags& sf, const Rounds& r) {
  const int64_t round = r.next();
  RW_CHECK(round > 0, Usage, r.out, " holds every merged round of this sharded ", r.command,
           " already: run the same command with --merge to write the report");
  if (round > 1) check_round_one_options(r, round, sf.shard);
  r.record->results()["round"] = round;
  run_sharded(sf, {r.command, r.out + "/.rounds/" + std::to_string(round), r.record,
                   [&](const std::string& dir, const dist::Shard& s) {
                     RW_CHECK(!s.whole(), Internal, "run_rounds runs shards only");
                     io::ensure_dir(dir);
                     run_and_record(*r.record, dir + "/run.json", [&] {
                       r.shard(s, dir + "/.stages", round);
                       progress_done();
                     });
                     std::cout << r.command << " round " << round << " of " << r.total << ", shard " << s.str()
                               << " done (" << dir << ")\n";
                   },
                   [&](const std::vector<dist::Part>& parts, io::RunRecord& merged) {
                     std::vector<std::string> dirs;
                     for (const auto& pt : parts) dirs.push_back(pt.dir + "/.stages");
                     r.merge(dirs, round);
                     progress_done();
                     auto kept = comparable_options(r.record->options());
                     kept["round_shards"] = int64_t(parts.size());
                     kept["input_hashes"] = input_hashes(comparable_options(r.record->options()));
                     io::write_file_atomic(round_options_file(r, round), io::dump_json(kept, 1) + "\n");
                     if (round < r.total) {
                       std::cout << r.command << " round " << round << " of " << r.total << " merged (" << parts.size()
                                 << " shards). Next: run the same shards again, then --merge\n";
                       return;
                     }
                     r.finish(merged);  // records the skipped items of the merged stages
                   },
                   /*adopt_skips=*/false});
}
}  // namespace

void run_rounds(const ShardFlags& sf, const Rounds& r) {
  const nlohmann::json options = r.record->options();  // every round's parts are made with these
  // under MPI all rounds run in one launch: rank 0 merges a round while the others wait
  const bool mpi = dist::mpi_active() && !sf.merge;
  for (int64_t pass = 0; pass < (mpi ? r.total : 1); ++pass) {
    try {
      r.record->options() = options;
      one_round(sf, r);
    } catch (...) {
      if (mpi && pass + 1 < r.total) dist::all_ok(false);
      throw;
    }
    if (mpi && pass + 1 < r.total)
      RW_CHECK(dist::all_ok(true), Input, "round ", pass + 1, " of the ", r.command, " failed on a rank or in its merge (see ",
               r.out, "/.rounds/", pass + 1, "/part-I-of-N/run.json)");
  }
}

}  // namespace rw::cli
