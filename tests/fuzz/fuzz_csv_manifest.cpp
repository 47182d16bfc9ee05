// The CSV parser and the manifest reader (every dataset a user gives rewind).
#include "fuzz_util.h"
#include "rewind/io/csv.h"
#include "rewind/io/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto rows = rw::io::parse_csv(text, "<fuzz>");
    // what parse_csv returns, csv_line writes back and parse_csv reads again unchanged: the
    // writer's quoting and formula guard are exactly the reader's
    std::string back;
    for (const auto& r : rows) back += rw::io::csv_line(r);
    if (rw::io::parse_csv(back, "<fuzz-back>") != rows) __builtin_trap();
  } catch (const rw::Error&) {
  }
  try {
    auto m = rw::io::read_manifest(rw::fuzz::write_input(data, size, "manifest.csv"));
    for (size_t i = 0; i < m.entries.size(); ++i) (void)m.resolve(i);
    (void)m.by_identity();
  } catch (const rw::Error&) {
  }
  return 0;
}
