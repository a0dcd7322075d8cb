// The JSONL lines of a forward call's stage records, formatted on the file
// queue's thread: the host hands over each record's text up to its
// statistics (position, layer, point, shape) and after its row reference
// (the logits' top-k), and this fills in the numbers between, read from the
// page-locked batch the device copied back. Formatting thousands of doubles
// is most of a traced step's host time otherwise. The text equals what
// JSON.stringify makes of the record (test/stage-lines.test.ts checks it).
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace greta {

// v as JSON.stringify writes a number (ECMAScript Number::toString): the
// shortest digits that read back as v (std::to_chars picks the same ones),
// laid out fixed for 1e-6 <= |v| < 1e21 and as d.ddde+x otherwise; -0 is 0
// and a value that is not finite is null.
inline void append_json_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  if (v == 0) {
    out += '0';
    return;
  }
  char buf[40];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view s(buf, static_cast<size_t>(r.ptr - buf));  // [-]d[.ddd]e(+|-)xx
  if (s[0] == '-') {
    out += '-';
    s.remove_prefix(1);
  }
  const size_t e = s.find('e');
  std::string digits(1, s[0]);
  if (e > 1) digits.append(s.substr(2, e - 2));
  const int n = std::atoi(std::string(s.substr(e + 1)).c_str()) + 1;  // v = 0.digits x 10^n
  const int k = static_cast<int>(digits.size());
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<size_t>(n));
    out += '.';
    out.append(digits, static_cast<size_t>(n), std::string::npos);
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-n), '0');
    out += digits;
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out.append(digits, 1, std::string::npos);
    }
    out += 'e';
    out += n - 1 >= 0 ? '+' : '-';
    out += std::to_string(std::abs(n - 1));
  }
}

// A sample value as the trace schema's JSON number: NaN and the infinities as strings.
inline void append_sample_number(std::string& out, double v) {
  if (std::isnan(v)) out += "\"NaN\"";
  else if (std::isinf(v)) out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  else append_json_number(out, v);
}

// Every field the records of one batch need, copied out of the host's buffers.
struct StageLines {
  static constexpr int STATS = 7;     // mean, abs_mean, rms, min, max, nan, inf
  static constexpr int SAMPLES = 16;  // sample indices per row at most (src/trace/tracer.ts sampleIndices)
  std::string heads, tails, row_file;  // row_file already a JSON string
  std::vector<size_t> head_end, tail_end;
  std::vector<double> stats;       // STATS per record
  std::vector<uint64_t> hash;      // one per record
  std::vector<int64_t> width, at;  // row width, and its first element in the batch's rows
  std::vector<double> samples;     // min(width, SAMPLES) per record, in order
  int64_t row_offset = 0;          // the batch's first element in the sidecar, in bytes
  int64_t elem_bytes = 4;

  static int64_t sample_count(int64_t w) { return w < SAMPLES ? w : SAMPLES; }
  // sampleIndices: floor(i * n / count), or every index of a short row.
  static int64_t sample_index(int64_t w, int64_t i) { return w <= SAMPLES ? i : i * w / SAMPLES; }

  void format(std::string& out) const {
    size_t h0 = 0, t0 = 0, s0 = 0;
    out.reserve(heads.size() + tails.size() + head_end.size() * 700);
    for (size_t r = 0; r < head_end.size(); r++) {
      out.append(heads, h0, head_end[r] - h0);
      h0 = head_end[r];
      static const char* const names[STATS] = {"mean", "abs_mean", "rms", "min", "max", "nan", "inf"};
      out += "\"stats\":{";
      for (int i = 0; i < STATS; i++) {
        if (i) out += ',';
        out += '"';
        out += names[i];
        out += "\":";
        append_json_number(out, stats[r * STATS + i]);
      }
      char hex[17];
      for (int i = 0; i < 16; i++) hex[i] = "0123456789abcdef"[(hash[r] >> (60 - 4 * i)) & 15];
      hex[16] = 0;
      out += "},\"hash\":\"";
      out += hex;
      out += "\",\"sample\":{\"indices\":[";
      const int64_t n = sample_count(width[r]);
      for (int64_t i = 0; i < n; i++) {
        if (i) out += ',';
        out += std::to_string(sample_index(width[r], i));
      }
      out += "],\"values\":[";
      for (int64_t i = 0; i < n; i++) {
        if (i) out += ',';
        append_sample_number(out, samples[s0 + static_cast<size_t>(i)]);
      }
      s0 += static_cast<size_t>(n);
      out += "]},\"row\":{\"file\":";
      out += row_file;
      out += ",\"offset\":";
      out += std::to_string(row_offset + at[r] * elem_bytes);
      out += ",\"bytes\":";
      out += std::to_string(width[r] * elem_bytes);
      out += '}';
      out.append(tails, t0, tail_end[r] - t0);
      t0 = tail_end[r];
      out += "}\n";
    }
  }
};

}  // namespace greta
