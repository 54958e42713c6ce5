// Rendering of an InspectReport: a compact human summary, or JSON for scripts.
#include <sstream>

#include "gemma4/config.h"
#include "inspect/hf_inspect.h"
#include "runtime/text_file.h"

namespace g4 {
using json = nlohmann::json;
using namespace gemma4;


json inspect_report_json(const InspectReport& r) {
  const TextConfig& t = r.config.text;
  json layers = json::array();
  for (const LayerSpec& s : t.layers) layers.push_back(layer_spec_json(s));
  json problems = json::array();
  for (const auto& p : r.problems) problems.push_back({{"kind", p.kind}, {"message", p.message}});
  json out = {
      {"format", r.format},
      {"dir", r.dir.string()},
      {"form", form_name(r.config.form)},
      {"architecture", r.config.form == ModelForm::kCausal ? "Gemma4ForCausalLM" : "Gemma4ForConditionalGeneration"},
      {"text_prefix", r.config.text_prefix()},
      {"variant", r.variant},
      {"structure", r.structure},
      {"config", text_config_to_json(t)},
      {"vision_tower", !r.config.vision_config.is_null()},
      {"audio_tower", !r.config.audio_config.is_null()},
      {"layers", layers},
      {"files", r.files},
      {"tensors", r.tensors},
      {"text_tensors", r.text_tensors},
      {"tower_tensors", r.tower_tensors},
      {"redundant_shared_kv_tensors", r.redundant_shared_kv},
      {"bytes", r.bytes},
      {"dtypes", r.dtypes},
      {"scanned", r.scanned},
      {"problems", problems},
      {"ok", r.problems.empty()},
  };
  if (r.format == "megatron") {
    out["iteration_dir"] = r.iteration_dir.string();
    out["written_by"] = r.written_by;
    out["layer_keys"] = r.layer_keys;
    out["extra_state_objects"] = r.extra_state_objects;
    out["chunks"] = r.chunks;
  }
  return out;
}

std::string inspect_report_text(const InspectReport& r) {
  const TextConfig& t = r.config.text;
  std::ostringstream o;
  o << "checkpoint  " << r.dir.string() << "\n";
  if (r.format == "megatron") {
    o << "format      Megatron-Core torch_dist, " << r.iteration_dir.filename().string() << ", written by " << r.written_by << ", "
      << r.files << (r.files == 1 ? " .distcp file" : " .distcp files") << ", " << r.layer_keys << " layer keys, " << r.chunks
      << " chunks, " << r.extra_state_objects << " _extra_state objects\n";
  } else {
    o << "format      HF safetensors, " << r.files << (r.files == 1 ? " file" : " files") << "\n";
  }
  o << "form        " << form_name(r.config.form) << " ("
    << (r.config.form == ModelForm::kCausal ? "Gemma4ForCausalLM" : "Gemma4ForConditionalGeneration") << ", keys under "
    << r.config.text_prefix() << ")";
  if (!r.config.vision_config.is_null()) o << ", vision tower";
  if (!r.config.audio_config.is_null()) o << ", audio tower";
  o << "\n";
  o << "variant     " << r.variant << "  (structure " << r.structure << ")\n";
  o << "text        H " << t.hidden_size << ", " << t.num_hidden_layers << " layers, " << t.num_attention_heads
    << " heads, vocab " << t.vocab_size << ", window " << t.sliding_window << ", softcap "
    << (t.final_logit_softcapping ? std::to_string(*t.final_logit_softcapping).substr(0, 4) : std::string("none")) << "\n";
  o << "schedule    layers  type     geometry\n";
  for (const std::string& line : schedule_lines(t)) o << "            " << line << "\n";
  o << "tensors     " << r.tensors << " (" << r.text_tensors << " text";
  if (r.tower_tensors) o << ", " << r.tower_tensors << " tower";
  if (r.redundant_shared_kv) o << ", " << r.redundant_shared_kv << " redundant K/V of KV-shared layers";
  o << "), " << human_bytes(r.bytes) << ", dtypes";
  for (const auto& [name, count] : r.dtypes) o << " " << name << "×" << count;
  o << "\n";
  if (r.problems.empty()) {
    o << "problems    none" << (r.scanned ? " (values scanned)" : "") << "\n";
  } else {
    o << "problems    " << r.problems.size() << "\n";
    for (const auto& p : r.problems) o << "  [" << p.kind << "] " << p.message << "\n";
  }
  return o.str();
}

}  // namespace g4
