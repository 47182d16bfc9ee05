#include "rewind/io/csv.h"

#include <cstdlib>

#include "rewind/core/error.h"

namespace rw::io {

namespace {

bool formula_start(char c) { return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r'; }

/// A cell a spreadsheet would run as a formula: starts with = + - @ tab CR and is not a plain number.
bool needs_guard(const std::string& f) {
  if (f.empty()) return false;
  if (f[0] == '\'') {  // quotes then a formula character: guarded too, so that reading undoes exactly one
    const size_t q = f.find_first_not_of('\'');
    return q != std::string::npos && formula_start(f[q]);
  }
  if (!formula_start(f[0])) return false;
  if (f[0] == '-' || f[0] == '+') {
    char* end = nullptr;
    std::strtod(f.c_str(), &end);
    if (f.size() > 1 && end == f.c_str() + f.size()) return false;  // a number, e.g. "-0.25"
  }
  return true;
}

/// The inverse of the guard: "'X" -> "X" when the writer would have guarded X.
std::string unguard(std::string f) {
  if (f.size() > 1 && f[0] == '\'' && needs_guard(f.substr(1))) f.erase(0, 1);
  return f;
}

}  // namespace

std::vector<CsvRow> parse_csv(const std::string& text, const std::string& source) {
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string field;
  bool in_quotes = false, field_started = false;
  size_t line = 1, quote_line = 0;
  auto end_row = [&] {
    if (field_started || !row.empty()) {
      row.push_back(unguard(field));
      rows.push_back(std::move(row));
    }
    row.clear();
    field.clear();
    field_started = false;
  };
  size_t i = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // UTF-8 BOM
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"') {
      in_quotes = true;
      field_started = true;
      quote_line = line;
    } else if (c == ',') {
      row.push_back(unguard(field));
      field.clear();
      field_started = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_row();
      ++line;
    } else {
      field += c;
      field_started = true;
    }
  }
  RW_CHECK(!in_quotes, Input, source, ":", quote_line,
           ": unterminated quoted field (a '\"' opens a field that never closes; double it as "
           "\"\" inside quotes)");
  end_row();
  return rows;
}

std::string csv_escape(const std::string& field) {
  const bool guard = needs_guard(field);
  const std::string f = guard ? "'" + field : field;
  // quoted: separators, quotes, line breaks, and a leading byte-order mark (which the reader would
  // strip at the start of a file)
  if (!guard && f.find_first_of(",\"\n\r") == std::string::npos && f.compare(0, 3, "\xEF\xBB\xBF") != 0) return f;
  std::string out = "\"";
  for (char c : f) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string csv_line(const CsvRow& row) {
  if (row.size() == 1 && row[0].empty()) return "\"\"\n";  // a bare newline would read back as no row
  std::string s;
  for (size_t i = 0; i < row.size(); ++i) {
    if (i) s += ',';
    s += csv_escape(row[i]);
  }
  return s + "\n";
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  for (char c : s + sep) {
    if (c != sep) item += c;
    else if (!item.empty()) out.push_back(std::move(item)), item.clear();
  }
  return out;
}

}  // namespace rw::io
