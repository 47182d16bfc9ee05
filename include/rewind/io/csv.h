// Minimal RFC 4180 CSV: quoted fields, embedded commas, quotes and newlines. Used for manifests,
// items.csv, scores.csv — every table rewind reads or writes.
#pragma once

#include <string>
#include <vector>

namespace rw::io {

using CsvRow = std::vector<std::string>;

/// Parses CSV text into rows. Throws Error{kInput} naming `source` and the line on an unterminated
/// quote. Accepts \n and \r\n line ends; skips empty lines. Undoes csv_escape's formula guard: a
/// field "'X" where X starts with = + - @ tab CR (or with ' and one of those) reads as X.
std::vector<CsvRow> parse_csv(const std::string& text, const std::string& source = "<csv>");

/// Quotes a field only when needed. Formula guard (OWASP's rule against CSV injection): a field
/// that starts with = + - @ tab or CR and is not a number is written quoted with a leading ', so
/// spreadsheets show it as text; parse_csv gives back the original.
std::string csv_escape(const std::string& field);
std::string csv_line(const CsvRow& row);

/// "a,b,,c" -> {"a", "b", "c"}: an option's comma list, empty items dropped.
std::vector<std::string> split_list(const std::string& s, char sep = ',');

}  // namespace rw::io
