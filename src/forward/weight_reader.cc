#include "forward/weight_reader.h"

#include "forward/scalar_math.h"

namespace g4::forward {
namespace {

std::vector<float> to_values(const Tensor& t, const Precision& p) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  to_f32(t.dtype(), t.raw(), v.data(), v.size());
  if (p.bf16())  // the model cast: a bf16 model holds bf16 parameters, also when the checkpoint stores f32
    for (float& x : v) x = scalar::round_bf16(x);
  return v;
}

}  // namespace

Result<Tensor> WeightReader::matrix(const std::string& name) const {
  G4_ASSIGN_OR_RETURN(Stored s, stored(name));
  if (s.shape.size() != 2) return Status::mismatch("'" + s.key + "' is not 2-D: " + shape_to_string(s.shape));
  G4_ASSIGN_OR_RETURN(Tensor t, s.elements(0, static_cast<uint64_t>(s.shape[0] * s.shape[1])));
  return t.view(s.shape[0], s.shape[1]);
}

Result<Tensor> WeightReader::slice(const std::string& name, int64_t index) const {
  G4_ASSIGN_OR_RETURN(Stored s, stored(name));
  if (s.shape.size() != 3 || index < 0 || index >= s.shape[0])
    return Status::mismatch("'" + s.key + "': no slice " + std::to_string(index) + " in " + shape_to_string(s.shape));
  const uint64_t n = static_cast<uint64_t>(s.shape[1] * s.shape[2]);
  G4_ASSIGN_OR_RETURN(Tensor t, s.elements(static_cast<uint64_t>(index) * n, n));
  return t.view(s.shape[1], s.shape[2]);
}

Result<int64_t> WeightReader::row_count(const std::string& name) const {
  G4_ASSIGN_OR_RETURN(Stored s, stored(name));
  if (s.shape.size() != 2) return Status::mismatch("'" + s.key + "' is not 2-D: " + shape_to_string(s.shape));
  return s.shape[0];
}

Result<Tensor> WeightReader::row_block(const std::string& name, int64_t first, int64_t count) const {
  G4_ASSIGN_OR_RETURN(Stored s, stored(name));
  if (s.shape.size() != 2 || first < 0 || count < 0 || first + count > s.shape[0])
    return Status::mismatch("'" + s.key + "': no rows [" + std::to_string(first) + ", " + std::to_string(first + count) + ") in " +
                            shape_to_string(s.shape));
  G4_ASSIGN_OR_RETURN(Tensor t, s.elements(static_cast<uint64_t>(first * s.shape[1]), static_cast<uint64_t>(count * s.shape[1])));
  return t.view(count, s.shape[1]);
}

Result<Mat> WeightReader::rows(const std::string& name, const std::vector<int64_t>& ids, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(Stored s, stored(name));
  if (s.shape.size() != 2) return Status::mismatch("'" + s.key + "' is not 2-D");
  Mat m(static_cast<int64_t>(ids.size()), s.shape[1]);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= s.shape[0])
      return Status::invalid_argument("token id " + std::to_string(ids[i]) + " is outside '" + s.key + "' (" +
                                      std::to_string(s.shape[0]) + " rows)");
    G4_ASSIGN_OR_RETURN(Tensor row, s.elements(static_cast<uint64_t>(ids[i] * s.shape[1]), static_cast<uint64_t>(s.shape[1])));
    const std::vector<float> v = to_values(row, p);
    std::copy(v.begin(), v.end(), m.row(static_cast<int64_t>(i)));
  }
  return m;
}

Result<std::vector<float>> WeightReader::vector(const std::string& name, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(Stored s, stored(name));
  G4_ASSIGN_OR_RETURN(Tensor t, s.elements(0, checked_numel(s.shape).value_or(0)));
  return to_values(t, p);
}

}  // namespace g4::forward
