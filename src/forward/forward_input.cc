#include "forward/forward_input.h"

#include "runtime/json_parse.h"

namespace g4::forward {
using json = nlohmann::json;

int64_t ForwardInput::last_real(int64_t b) const {
  for (int64_t s = seq - 1; s >= 0; --s)
    if (attention_mask[static_cast<size_t>(b * seq + s)]) return s;
  return -1;
}

namespace {

// Reads a [B, S] integer matrix (or one flat row); rows must have equal lengths.
Status read_rows(const json& j, const std::string& where, std::vector<int64_t>& out, int64_t& batch, int64_t& seq) {
  if (!j.is_array() || j.empty()) return Status::invalid_argument(where + ": expected a non-empty list of rows");
  json rows = j[0].is_array() ? j : json::array({j});
  batch = static_cast<int64_t>(rows.size());
  seq = static_cast<int64_t>(rows[0].size());
  if (seq == 0) return Status::invalid_argument(where + ": rows are empty");
  out.clear();
  for (size_t r = 0; r < rows.size(); ++r) {
    if (!rows[r].is_array() || static_cast<int64_t>(rows[r].size()) != seq)
      return Status::invalid_argument(where + "[" + std::to_string(r) + "]: every row must have " + std::to_string(seq) +
                                      " entries (pad rows and mark padding in attention_mask)");
    for (const json& v : rows[r]) {
      if (!v.is_number_integer()) return Status::invalid_argument(where + "[" + std::to_string(r) + "]: expected integers");
      out.push_back(v.get<int64_t>());
    }
  }
  return {};
}

Status same_shape(const std::string& field, int64_t b, int64_t s, const ForwardInput& in) {
  if (b != in.batch || s != in.seq)
    return Status::invalid_argument(field + ": shape [" + std::to_string(b) + ", " + std::to_string(s) +
                                    "] differs from input_ids [" + std::to_string(in.batch) + ", " + std::to_string(in.seq) + "]");
  return {};
}

void fill_defaults(ForwardInput& in) {
  if (in.attention_mask.empty()) in.attention_mask.assign(static_cast<size_t>(in.batch * in.seq), 1);
  if (in.position_ids.empty())
    for (int64_t b = 0; b < in.batch; ++b)
      for (int64_t s = 0; s < in.seq; ++s) in.position_ids.push_back(s);
}

}  // namespace

Result<ForwardInput> parse_forward_input(std::string_view text, std::string_view file_view) {
  const std::string file(file_view);
  G4_ASSIGN_OR_RETURN(json j, parse_json(text, file));
  if (!j.is_object() || !j.contains("input_ids")) return Status::invalid_argument(file + ": expected an object with 'input_ids'");
  ForwardInput in;
  Status s = read_rows(j["input_ids"], "input_ids", in.input_ids, in.batch, in.seq);
  if (!s.ok()) return s.with_context(file);
  int64_t b = 0, n = 0;
  if (j.contains("attention_mask") && !j["attention_mask"].is_null()) {
    std::vector<int64_t> mask;
    s = read_rows(j["attention_mask"], "attention_mask", mask, b, n);
    if (s.ok()) s = same_shape("attention_mask", b, n, in);
    if (!s.ok()) return s.with_context(file);
    for (int64_t v : mask) {
      if (v != 0 && v != 1) return Status::invalid_argument(file + ": attention_mask: values must be 0 or 1");
      in.attention_mask.push_back(static_cast<uint8_t>(v));
    }
  }
  for (auto [key, target] : {std::pair{"mm_token_type_ids", &in.mm_token_type_ids}, {"position_ids", &in.position_ids}}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    s = read_rows(j[key], key, *target, b, n);
    if (s.ok()) s = same_shape(key, b, n, in);
    if (!s.ok()) return s.with_context(file);
  }
  for (int64_t t : in.mm_token_type_ids)
    if (t < 0 || t > 3) return Status::invalid_argument(file + ": mm_token_type_ids: values must be 0 (text) to 3 (audio)");
  fill_defaults(in);
  for (int64_t b2 = 0; b2 < in.batch; ++b2)
    if (in.last_real(b2) < 0) return Status::invalid_argument(file + ": row " + std::to_string(b2) + " is all padding");
  return in;
}

Result<ForwardInput> forward_input_from_ids(std::string_view ids) {
  ForwardInput in;
  in.batch = 1;
  std::string token;
  std::string text(ids);
  text += ',';
  for (char c : text) {
    if (c == ',') {
      if (token.empty()) return Status::invalid_argument("--ids: empty token id in '" + std::string(ids) + "'");
      try {
        size_t used = 0;
        long long v = std::stoll(token, &used);
        if (used != token.size()) throw std::invalid_argument(token);
        in.input_ids.push_back(v);
      } catch (...) {
        return Status::invalid_argument("--ids: '" + token + "' is not an integer");
      }
      token.clear();
    } else if (c != ' ') {
      token += c;
    }
  }
  in.seq = static_cast<int64_t>(in.input_ids.size());
  fill_defaults(in);
  return in;
}

}  // namespace g4::forward
