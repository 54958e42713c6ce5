#include "convert/roundtrip.h"

#include <cmath>
#include <cstring>

#include "convert/mcore2hf.h"
#include "runtime/json_parse.h"
#include "runtime/safetensors_set.h"
#include "runtime/text_file.h"

namespace g4::convert {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Bookkeeping, not architecture: which library wrote the file, and the dtype field's spelling (the
// tensors' dtypes are compared byte for byte instead).
bool ignored_config_field(const std::string& key) {
  return key == "transformers_version" || key == "_name_or_path" || key == "torch_dtype" || key == "dtype";
}

void compare_json(const json& a, const json& b, const std::string& path, std::vector<Difference>& out) {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (ignored_config_field(it.key())) continue;
      const std::string p = path.empty() ? it.key() : path + "." + it.key();
      if (!b.contains(it.key())) out.push_back({p, it.value().dump(), "(missing)"});
      else compare_json(it.value(), b[it.key()], p, out);
    }
    return;
  }
  if (a.is_number() && b.is_number() && a.get<double>() == b.get<double>()) return;  // 1 == 1.0
  if (a != b) out.push_back({path, a.dump(), b.dump()});
}

std::string describe_bytes(std::span<const std::byte> a, std::span<const std::byte> b, DType dtype) {
  const size_t es = dtype_size(dtype), n = a.size() / es;
  size_t differing = 0;
  double max_abs = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(a.data() + i * es, b.data() + i * es, es) == 0) continue;
    ++differing;
    if (dtype_converts_to_f32(dtype)) {
      float x, y;
      to_f32(dtype, a.data() + i * es, &x, 1);
      to_f32(dtype, b.data() + i * es, &y, 1);
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(x - y)));
    }
  }
  char buf[128];
  std::snprintf(buf, sizeof buf, "%zu of %zu elements differ, max |d| %.4g", differing, n, max_abs);
  return buf;
}

}  // namespace

Status compare_hf_checkpoints(const fs::path& original, const fs::path& converted, RoundtripReport& report) {
  G4_ASSIGN_OR_RETURN(SafetensorsSet a, SafetensorsSet::open_dir(original));
  G4_ASSIGN_OR_RETURN(SafetensorsSet b, SafetensorsSet::open_dir(converted));
  for (const auto& [name, ea] : a.tensors()) {
    const SafetensorsSet::Entry* eb = b.find(name);
    if (!eb) {
      report.tensor_differences.push_back({name, "present", "(missing)"});
      continue;
    }
    if (ea.info->dtype != eb->info->dtype || ea.info->shape != eb->info->shape) {
      report.tensor_differences.push_back({name, std::string(dtype_name(ea.info->dtype)) + " " + shape_to_string(ea.info->shape),
                                           std::string(dtype_name(eb->info->dtype)) + " " + shape_to_string(eb->info->shape)});
      continue;
    }
    std::span<const std::byte> da = a.data(ea), db = b.data(*eb);
    ++report.tensors_compared;
    report.bytes_compared += da.size();
    if (std::memcmp(da.data(), db.data(), da.size()) != 0)
      report.tensor_differences.push_back({name, "bytes", describe_bytes(da, db, ea.info->dtype)});
    ea.file->release_range(da);
    eb->file->release_range(db);
  }
  for (const auto& [name, eb] : b.tensors())
    if (!a.find(name)) report.tensor_differences.push_back({name, "(missing)", "present"});

  G4_ASSIGN_OR_RETURN(std::string ca, read_text_file(original / "config.json", 64u << 20));
  G4_ASSIGN_OR_RETURN(std::string cb, read_text_file(converted / "config.json", 64u << 20));
  G4_ASSIGN_OR_RETURN(const json ja, parse_json(ca, (original / "config.json").string()));
  G4_ASSIGN_OR_RETURN(const json jb, parse_json(cb, (converted / "config.json").string()));
  compare_json(ja, jb, "", report.config_differences);
  return {};
}

namespace {
// The conversions and the comparison, inside `scratch`.
Result<RoundtripReport> roundtrip_in(const RoundtripOptions& options, const fs::path& scratch) {
  RoundtripReport report;
  Hf2McoreOptions to_mcore;
  to_mcore.hf = options.hf;
  to_mcore.out = scratch / "mcore";
  to_mcore.threads = options.threads;
  to_mcore.text_mode = options.text_mode;
  to_mcore.common = options.common;
  to_mcore.output = OutputPolicy(false, options.output.notice());
  to_mcore.progress = options.progress;
  G4_ASSIGN_OR_RETURN(report.to_mcore, hf2mcore(to_mcore));
  Mcore2HfOptions to_hf;
  to_hf.mcore = scratch / "mcore";
  to_hf.out = scratch / "hf";
  to_hf.reference_hf = options.hf;
  to_hf.threads = options.threads;
  to_hf.output = OutputPolicy(false, options.output.notice());
  to_hf.progress = options.progress;
  G4_ASSIGN_OR_RETURN(report.to_hf, mcore2hf(to_hf));
  report.warnings = report.to_mcore.warnings;
  report.warnings.insert(report.warnings.end(), report.to_hf.warnings.begin(), report.to_hf.warnings.end());
  G4_RETURN_IF_ERROR(compare_hf_checkpoints(options.hf, scratch / "hf", report));
  if (options.inspect_intermediates) G4_RETURN_IF_ERROR(options.inspect_intermediates(scratch / "mcore", scratch / "hf"));
  return report;
}
}  // namespace

Result<RoundtripReport> roundtrip(const RoundtripOptions& options) {
  OutputPolicy policy = options.output;
  policy.protect(options.hf);
  // A kept pair replaces only an earlier kept pair; without --keep the scratch directory goes at the end.
  auto kept_pair = [](const fs::path& dir) {
    std::error_code ec;
    return fs::is_empty(dir, ec) || (fs::is_directory(dir / "mcore", ec) && fs::is_directory(dir / "hf", ec));
  };
  G4_ASSIGN_OR_RETURN(OutputDir out, options.keep ? policy.directory(*options.keep, kept_pair) : policy.scratch("g4convert-roundtrip"));
  const fs::path scratch = out.temp_path();
  Result<RoundtripReport> report = roundtrip_in(options, scratch);
  if (!report.ok()) return out.in_user_terms(report.status());
  if (options.keep) G4_RETURN_IF_ERROR(out.commit());
  return report;
}

}  // namespace g4::convert
