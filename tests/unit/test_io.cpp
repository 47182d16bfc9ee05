#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "rewind/core/error.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/csv.h"
#include "rewind/io/manifest.h"
#include "rewind/io/npy.h"
#include "rewind/io/run_record.h"
#include "test_util.h"

using namespace rw;
using rw::test::TempDir;
using rw::test::read_text;
using rw::test::write_text;
namespace fs = std::filesystem;

TEST(Csv, QuotedFieldsRoundTrip) {
  io::CsvRow row{"a,b", "say \"hi\"", "multi\nline", "", "plain"};
  std::string text = io::csv_line({"h1", "h2", "h3", "h4", "h5"}) + io::csv_line(row);
  auto rows = io::parse_csv(text);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1], row);
}

TEST(Csv, FormulaCellsAreGuardedAndReadBack) {
  const std::vector<std::string> hostile = {"=HYPERLINK(\"http://x\")", "+1+1", "-cmd|' /C calc'!A0", "@SUM(A1)",
                                            "\tx", "=", "-", "'=x", "''=x", "'''+y", "plain", "'quoted", "-0.25", "+3",
                                            "-1e-05", "1,=x"};
  for (const auto& h : hostile) {
    const auto line = io::csv_line({h, "id"});
    const bool number = h == "-0.25" || h == "+3" || h == "-1e-05";
    const bool formula = !number && h != "'quoted" && std::string("=+-@\t'").find(h[0]) != std::string::npos;
    // a formula cell reaches a spreadsheet as quoted text with a leading '
    EXPECT_EQ(line.rfind("\"'", 0) == 0, formula) << h << " -> " << line;
    auto back = io::parse_csv(line);
    ASSERT_EQ(back.size(), 1u) << h;
    EXPECT_EQ(back[0][0], h) << line;  // the original comes back
  }
  EXPECT_EQ(io::csv_line({"-0.25", "=1"}), "-0.25,\"'=1\"\n");  // numbers stay numbers
}

TEST(Csv, CrLfAndBlankLines) {
  auto rows = io::parse_csv("a,b\r\n\r\n1,2\r\n");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1], (io::CsvRow{"1", "2"}));
}

TEST(Csv, UnterminatedQuoteNamesSourceAndLine) {
  try {
    io::parse_csv("a,b\n1,\"oops\n", "m.csv");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(e.message().find("m.csv:2"), std::string::npos) << e.message();
  }
}

TEST(Manifest, RoundTripWithMemberAndExtraColumns) {
  TempDir d;
  io::Manifest m;
  m.extra_columns = {"label"};
  m.entries = {{"a/1.png", "alice, jr", 1, {"3"}}, {"b/2.png", "bob", 0, {"7"}}, {"c.png", "carol", -1, {""}}};
  io::write_manifest(d / "m.csv", m);
  auto r = io::read_manifest(d / "m.csv");
  ASSERT_EQ(r.entries.size(), 3u);
  EXPECT_EQ(r.extra_columns, m.extra_columns);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.entries[i].path, m.entries[i].path);
    EXPECT_EQ(r.entries[i].identity, m.entries[i].identity);
    EXPECT_EQ(r.entries[i].member, m.entries[i].member);
    EXPECT_EQ(r.entries[i].extra, m.entries[i].extra);
  }
  EXPECT_EQ(r.resolve(0), (fs::path(d.path()) / "a/1.png").string());
  EXPECT_EQ(r.identity_count(), 3u);
  EXPECT_TRUE(r.has_member_labels());
}

TEST(Manifest, GroupsByIdentityInOrder) {
  io::Manifest m;
  m.entries = {{"1", "x", -1, {}}, {"2", "y", -1, {}}, {"3", "x", -1, {}}};
  auto g = m.by_identity();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].first, "x");
  EXPECT_EQ(g[0].second, (std::vector<size_t>{0, 2}));
  EXPECT_FALSE(m.has_member_labels());
}

TEST(Manifest, BadFilesGiveErrorsNamingTheFileAndFix) {
  TempDir d;
  struct Case { std::string text, expect; };
  std::vector<Case> cases = {
      {"", "is empty"},
      {"file,who\nx.png,a\n", "header naming the columns `path` and `identity`"},
      {"path,identity\n", "no rows"},
      {"path,identity\nx.png,\n", "empty identity"},
      {"path,identity,member\nx.png,a,maybe\n", "member must be 1, 0 or empty"},
      {"path,identity\nx.png,a,extra\n", "has 3 fields"},
      {std::string("path,identity\nx.png\0.jpg,a\n", 27), "NUL byte"},  // would open x.png, not what is recorded
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string p = d / ("bad" + std::to_string(i) + ".csv");
    write_text(p, cases[i].text);
    try {
      io::read_manifest(p);
      ADD_FAILURE() << "no error for case " << i;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
      EXPECT_NE(e.message().find(p), std::string::npos) << e.message();
      EXPECT_NE(e.message().find(cases[i].expect), std::string::npos) << e.message();
    }
  }
  EXPECT_THROW(io::read_manifest(d / "missing.csv"), Error);
  EXPECT_THROW(io::read_manifest(d.path()), Error);
  // paths leaving the manifest's folder are allowed, and counted (run.json records the count)
  write_text(d / "out.csv", "path,identity\n../x.png,a\n/abs/y.png,b\nz.png,c\n");
  const int64_t before = io::paths_outside_manifest_folders();
  EXPECT_EQ(io::read_manifest(d / "out.csv").outside_folder, 2);
  EXPECT_EQ(io::paths_outside_manifest_folders() - before, 2);
}

TEST(Manifest, RelativeTo) {
  EXPECT_EQ(io::relative_to("/a/b/c.png", "/a"), "b/c.png");
  EXPECT_EQ(io::relative_to("/a/b/c.png", "/a/x"), "../b/c.png");
}

TEST(AtomicFile, WritesReplacesAndLeavesNoTemp) {
  TempDir d;
  std::string p = d / "sub/dir/out.txt";
  io::write_file_atomic(p, "first");
  io::write_file_atomic(p, "second");
  EXPECT_EQ(read_text(p), "second");
  int files = 0;
  for (auto& e : fs::directory_iterator(fs::path(p).parent_path())) { (void)e; ++files; }
  EXPECT_EQ(files, 1);
}

TEST(AtomicFile, FailedWriterKeepsOldFile) {
  TempDir d;
  std::string p = d / "keep.txt";
  io::write_file_atomic(p, "good");
  EXPECT_THROW(io::write_via_temp(p, [](const std::string& tmp) {
                 write_text(tmp, "half");
                 throw std::runtime_error("crash mid-write");
                 return true;
               }),
               std::runtime_error);
  EXPECT_THROW(io::write_via_temp(p, [](const std::string&) { return false; }), Error);
  EXPECT_EQ(read_text(p), "good");
  int files = 0;
  for (auto& e : fs::directory_iterator(d.path())) { (void)e; ++files; }
  EXPECT_EQ(files, 1);
}

TEST(AtomicFile, UnwritableFolderIsAnInputError) {
  TempDir d;
  write_text(d / "afile", "x");
  try {
    io::write_file_atomic(d / "afile/child.txt", "x");  // parent is a file
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(e.message().find("afile"), std::string::npos);
  }
}

TEST(Npy, RoundTripDtypesAndShapes) {
  TempDir d;
  std::vector<torch::Tensor> ts = {torch::randn({3, 4}), torch::randn({5}, torch::kFloat64),
                                   torch::arange(24, torch::kInt64).reshape({2, 3, 4}),
                                   torch::randint(0, 255, {7, 2}, torch::kUInt8),
                                   torch::arange(6, torch::kInt32), torch::zeros({0, 8})};
  for (size_t i = 0; i < ts.size(); ++i) {
    std::string p = d / ("t" + std::to_string(i) + ".npy");
    io::write_npy(p, ts[i]);
    auto r = io::read_npy(p);
    EXPECT_EQ(r.sizes(), ts[i].sizes());
    EXPECT_EQ(r.scalar_type(), ts[i].scalar_type());
    EXPECT_TRUE(torch::equal(r, ts[i])) << i;
  }
  // header is 64-byte aligned as numpy writes it
  auto s = read_text(d / "t0.npy");
  EXPECT_EQ((s.size() - 3 * 4 * 4) % 64, 0u);
}

TEST(Npy, CorruptFilesAreClearErrors) {
  TempDir d;
  io::write_npy(d / "ok.npy", torch::ones({10, 10}));
  std::string good = read_text(d / "ok.npy");
  write_text(d / "trunc.npy", good.substr(0, good.size() - 7));
  write_text(d / "magic.npy", "hello world this is not numpy");
  write_text(d / "empty.npy", "");
  for (const char* f : {"trunc.npy", "magic.npy", "empty.npy"}) {
    try {
      io::read_npy(d / f);
      ADD_FAILURE() << f;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
      EXPECT_NE(e.message().find(f), std::string::npos) << e.message();
    }
  }
}

// A header whose shape product overflows onto the data size (2^62 x 4 x 4 bytes wraps to 0) once
// allocated a tensor of that shape; a 20-digit entry once threw std::out_of_range (exit 1).
TEST(Npy, OverflowingShapesAreClearErrors) {
  TempDir d;
  auto npy = [](const std::string& shape) {
    std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
    h += std::string(63 - (10 + h.size()) % 64, ' ') + "\n";
    std::string b = "\x93NUMPY\x01";
    b += '\0';
    b += char(h.size() & 0xff);
    b += char(h.size() >> 8);
    return b + h;
  };
  write_text(d / "wrap.npy", npy("4611686018427387904, 4"));
  write_text(d / "huge.npy", npy("99999999999999999999999"));
  write_text(d / "zero.npy", npy("0, 7"));
  for (const char* f : {"wrap.npy", "huge.npy"}) {
    try {
      io::read_npy(d / f);
      ADD_FAILURE() << f << " was read";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
      EXPECT_NE(e.message().find(f), std::string::npos) << e.message();
    }
  }
  EXPECT_EQ(io::read_npy(d / "zero.npy").sizes(), (std::vector<int64_t>{0, 7}));
}

// Names that are not UTF-8 (Latin-1 folders) once made run.json's writer throw after all the work.
TEST(RunRecord, NonUtf8StringsAreWrittenNotThrown) {
  TempDir d;
  io::RunRecord r("test cmd");
  r.options() = {{"data", std::string("fotos/Jos\xe9")}};
  r.add_skip(std::string("caf\xe9.png"), "truncated");
  ASSERT_NO_THROW(r.write(d / "run.json", "ok"));
  auto j = nlohmann::json::parse(read_text(d / "run.json"));
  EXPECT_EQ(j["options"]["data"], "fotos/Jos\xef\xbf\xbd");  // U+FFFD
  EXPECT_EQ(io::dump_json(nlohmann::json(std::string("a\xff"))), "\"a\xef\xbf\xbd\"");
}

// A refused --resume / --merge names the first option that differs, as the user typed it.
TEST(RunRecord, DescribeDifferenceNamesTheFirstChangedOption) {
  using J = nlohmann::json;
  const J was = {{"steps", 200}, {"embed_batch", 4}, {"recovery", {{"lr", 0.05}, {"restarts", 2}}}};
  EXPECT_EQ(io::describe_difference(was, was, true), "");
  J now = was;
  now["embed_batch"] = 8;
  EXPECT_EQ(io::describe_difference(was, now, true), "--embed-batch was 4, here 8");
  now = was;
  now["recovery"]["lr"] = 0.1;
  EXPECT_EQ(io::describe_difference(was, now, false), "recovery.lr was 0.05, here 0.1");
  EXPECT_EQ(io::describe_difference(was, now, true), "recovery.lr was 0.05, here 0.1");  // nested: not a flag
  now = was;
  now["seed"] = 3;
  EXPECT_EQ(io::describe_difference(was, now, true), "--seed was not set, here 3");
  now = was;
  now.erase("steps");
  EXPECT_EQ(io::describe_difference(was, now, true), "--steps was set, here it is not");
  const J a = {{"data_hash", std::string(64, 'a')}}, b = {{"data_hash", std::string(64, 'b')}};
  EXPECT_EQ(io::describe_difference(a, b, true), "data_hash changed");  // a hash names data, not a flag
  // a list of a flag given once per file is named by that flag
  const J r1 = {{"reference_generators", J::array()}}, r2 = {{"reference_generators", {"r.pt"}}};
  EXPECT_EQ(io::describe_difference(r1, r2, true), "--reference-generator was [], here [\"r.pt\"]");
}

TEST(RunRecord, WritesOptionsTimingsSkipsAndBuild) {
  TempDir d;
  io::RunRecord r("test cmd");
  r.options() = {{"alpha", 1}, {"name", "x"}};
  r.set_seed(42);
  r.mark("stage1");
  r.add_skip("bad.png", "truncated PNG");
  r.results()["images"] = 3;
  r.write(d / "run.json", "ok");
  auto j = nlohmann::json::parse(read_text(d / "run.json"));
  EXPECT_EQ(j["command"], "rewind test cmd");
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["seed"], 42);
  EXPECT_EQ(j["options"]["alpha"], 1);
  EXPECT_EQ(j["skipped_count"], 1);
  EXPECT_EQ(j["skipped"][0]["reason"], "truncated PNG");
  EXPECT_TRUE(j["timings_s"].contains("stage1"));
  EXPECT_TRUE(j["build"].contains("torch"));
  EXPECT_EQ(j["results"]["images"], 3);
}
