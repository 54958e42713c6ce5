#include "convert/mcore_files.h"

#include <cmath>
#include <charconv>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "runtime/output_dir.h"
#include "runtime/torch/torch_save.h"

namespace g4::convert {
namespace fs = std::filesystem;
using gemma4::LayerType;
using nlohmann::json;
using torch::PyPtr;

namespace {

// PyYAML (YAML 1.1) reads "1e-06" as a string; a float needs a dot.
std::string yaml_float(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
  std::string s(buf, ec == std::errc() ? end : buf);
  if (s.find_first_of(".ne") == std::string::npos) return s + ".0";
  if (size_t e = s.find('e'); e != std::string::npos && s.find('.') == std::string::npos) s.insert(e, ".0");
  if (size_t e = s.find("e"); e != std::string::npos && s[e + 1] != '-' && s[e + 1] != '+') s.insert(e + 1, "+");
  return s;
}

// A JSON value in YAML flow style (JSON is valid YAML flow syntax except for PyYAML's float rule).
std::string yaml_value(const json& v) {
  if (v.is_number_float()) return yaml_float(v.get<double>());
  if (v.is_array()) {
    std::string s = "[";
    for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + yaml_value(v[k]);
    return s + "]";
  }
  if (v.is_object()) {
    std::string s = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      s += (first ? "" : ", ") + json(it.key()).dump() + ": " + yaml_value(it.value());
      first = false;
    }
    return s + "}";
  }
  return v.dump();
}

// (n_sliding, n_full) when layer_types repeats that pattern exactly, else the literal list (MB 4b9561cf2).
json attention_pattern(const gemma4::TextConfig& t) {
  const auto& types = t.layer_types;
  size_t s = 0;
  while (s < types.size() && types[s] == LayerType::kSliding) ++s;
  size_t f = 0;
  while (s + f < types.size() && types[s + f] == LayerType::kFull) ++f;
  bool periodic = f > 0;
  for (size_t l = 0; l < types.size() && periodic; ++l)
    periodic = types[l] == (l % (s + f) < s ? LayerType::kSliding : LayerType::kFull);
  if (periodic) return json::array({s, f});
  json list = json::array();
  for (LayerType type : types) list.push_back(std::string(gemma4::layer_type_name(type)));
  return list;
}

json dtype_node(DType d) {
  return {{"_target_", d == DType::kF32 ? "torch.float32" : d == DType::kF16 ? "torch.float16" : "torch.bfloat16"}, {"_call_", false}};
}

json hf_config_node(const std::string& cls, const json& config) {
  return {{"_target_", "transformers.models.gemma4.configuration_gemma4." + cls + ".from_dict"}, {"_call_", true}, {"config_dict", config}};
}

json provider_fields(const gemma4::ModelConfig& config, DType params_dtype) {
  const gemma4::TextConfig& t = config.text;
  // Full-attention geometry as the schedule resolved it (per_layer_config overrides the flat fields).
  int64_t global_head_dim = t.global_head_dim, global_kv_heads = t.num_key_value_heads;
  for (const gemma4::LayerSpec& s : t.layers)
    if (s.type == LayerType::kFull) {
      global_head_dim = s.head_dim;
      global_kv_heads = s.kv_heads;
      break;
    }
  const bool vl = config.form == gemma4::ModelForm::kConditional;
  json m = json::object();
  const std::string base = vl ? "megatron.bridge.models.gemma_vl.gemma4_vl_provider." : "megatron.bridge.models.gemma.gemma4_provider.";
  m["_target_"] = base + (t.enable_moe_block ? (vl ? "Gemma4VLModelProvider" : "Gemma4ModelProvider")
                                             : (vl ? "Gemma4DenseVLProvider" : "Gemma4DenseProvider"));
  m["num_layers"] = t.num_hidden_layers;
  m["hidden_size"] = t.hidden_size;
  m["ffn_hidden_size"] = t.intermediate_size;
  m["num_attention_heads"] = t.num_attention_heads;
  m["num_query_groups"] = t.num_key_value_heads;
  m["kv_channels"] = t.head_dim;
  m["vocab_size"] = t.vocab_size;
  m["seq_length"] = t.max_position_embeddings;
  m["layernorm_epsilon"] = t.rms_norm_eps;
  m["share_embeddings_and_output_weights"] = t.tie_word_embeddings;
  m["softmax_scale"] = 1.0;
  m["qk_layernorm"] = true;
  m["attention_k_eq_v"] = t.attention_k_eq_v;
  m["make_vocab_size_divisible_by"] = 128;
  m["final_logit_softcapping"] = t.final_logit_softcapping ? json(*t.final_logit_softcapping) : json(nullptr);
  m["tensor_model_parallel_size"] = 1;
  m["pipeline_model_parallel_size"] = 1;
  m["params_dtype"] = dtype_node(params_dtype);
  m["bf16"] = params_dtype == DType::kBF16;
  m["fp16"] = params_dtype == DType::kF16;
  if (t.enable_moe_block) {
    m["window_size"] = t.sliding_window;
    m["rotary_base"] = json::array({t.rope_sliding.rope_theta, t.rope_full.rope_theta});
    m["global_head_dim"] = global_head_dim;
    m["num_global_key_value_heads"] = global_kv_heads;
    m["global_rotary_percent"] = t.rope_full.partial_rotary_factor.value_or(1.0);
    m["interleaved_attn_pattern"] = attention_pattern(t);
    m["num_moe_experts"] = t.num_experts.value_or(0);
    m["moe_router_topk"] = t.top_k_experts.value_or(0);
    m["moe_ffn_hidden_size"] = t.moe_intermediate_size.value_or(0);
    m["moe_shared_expert_intermediate_size"] = t.intermediate_size;
    m["moe_grouped_gemm"] = true;
    m["moe_router_pre_softmax"] = true;
    m["moe_router_dtype"] = "fp32";
    m["transformer_layer_spec"] = {{"_target_", "megatron.bridge.models.gemma.modeling_gemma4.gemma4_block_spec"},
                                   {"_partial_", true},
                                   {"_args_", json::array()},
                                   {"use_transformer_engine", true}};
  } else {
    m["window_size"] = json::array({t.sliding_window - 1, 0});
    json skip = json::array();
    for (LayerType type : t.layer_types) skip.push_back(type == LayerType::kSliding);
    m["window_attn_skip_freq"] = skip;
    m["global_kv_channels"] = global_head_dim;
    m["num_global_query_groups"] = global_kv_heads;
    m["sliding_window_rope_base"] = t.rope_sliding.rope_theta;
    m["full_attention_rope_base"] = t.rope_full.rope_theta;
    m["full_attention_rope_partial_factor"] = t.rope_full.partial_rotary_factor.value_or(1.0);
    m["num_kv_shared_layers"] = t.num_kv_shared_layers;
    m["use_double_wide_mlp"] = t.use_double_wide_mlp;
    m["per_layer_embed_vocab_size"] = t.vocab_size_per_layer_input;
    m["per_layer_embed_dim"] = t.hidden_size_per_layer_input;
    m["hetereogenous_dist_checkpoint"] = layer_keys_for(t) == LayerKeys::kPerLayer;
  }
  if (vl) {
    const json hf = gemma4::to_hf_json(config);
    m["text_config"] = hf_config_node("Gemma4TextConfig", hf.value("text_config", json::object()));
    if (!config.vision_config.is_null()) m["vision_config"] = hf_config_node("Gemma4VisionConfig", config.vision_config);
    if (!config.audio_config.is_null()) m["audio_config"] = hf_config_node("Gemma4AudioConfig", config.audio_config);
    // Gemma4VLBridge.provider_bridge takes these from the top level of config.json, else the VL provider's
    // defaults (the released vocabulary's ids); without them MB's load_model_config falls back to those
    // defaults, wrong for any other vocabulary.
    struct VlField {
      const char* name;
      int64_t fallback;
    };
    constexpr VlField kVlFields[] = {{"vision_soft_tokens_per_image", 280}, {"bos_token_id", 2},       {"eos_token_id", 1},
                                     {"image_token_id", 258880},            {"video_token_id", 258884}, {"audio_token_id", 258881}};
    for (const VlField& f : kVlFields) m[f.name] = config.wrapper_fields.value(f.name, json(f.fallback));
    m["scatter_embedding_sequence_parallel"] = false;
  }
  return m;
}

Status write_train_state(const fs::path& path) {
  // Megatron-Bridge's TrainState.state_dict(): 0-dim tensors, int32 counters, float32 flops, bool flags.
  static const int32_t zero_i32 = 0;
  static const float zero_f32 = 0.0f;
  static const uint8_t false_u8 = 0;
  auto bytes = [](const auto& v) { return std::span<const std::byte>(reinterpret_cast<const std::byte*>(&v), sizeof v); };
  torch::TorchSaveWriter w;
  std::vector<std::pair<PyPtr, PyPtr>> items;
  for (const char* k : {"step", "consumed_train_samples", "skipped_train_samples", "consumed_valid_samples"})
    items.push_back({torch::py_str(k), w.tensor(DType::kI32, {}, bytes(zero_i32))});
  items.push_back({torch::py_str("floating_point_operations_so_far"), w.tensor(DType::kF32, {}, bytes(zero_f32))});
  for (const char* k : {"do_train", "do_valid", "do_test"}) items.push_back({torch::py_str(k), w.tensor(DType::kBool, {}, bytes(false_u8))});
  return w.write(path, *torch::py_dict(std::move(items)), path.stem().string());
}

Status write_common(const fs::path& path) {
  torch::TorchSaveWriter w;
  PyPtr content = torch::py_dict({{torch::py_str("singleton_local_shards"), torch::py_bool(false)},
                                  {torch::py_str("chained_optim_avoid_prefix"), torch::py_bool(true)}});
  PyPtr root = torch::py_dict({{torch::py_str("checkpoint_version"), torch::py_float(3.0)},
                               {torch::py_str("iteration"), torch::py_int(0)},
                               {torch::py_str("content_metadata"), content}});
  return w.write(path, *root, "common");
}

bool is_asset(const fs::path& p) {
  const std::string name = p.filename().string(), ext = p.extension().string();
  if (name == "config.json" || name == "model.safetensors.index.json" || name.starts_with(".")) return false;
  return ext == ".json" || ext == ".jinja" || ext == ".model" || ext == ".txt" || ext == ".tiktoken";
}

}  // namespace

std::string iteration_dir_name(IterationLayout layout) { return layout == IterationLayout::kRelease ? "release" : "iter_0000000"; }

std::string run_config_yaml(const gemma4::ModelConfig& config, DType params_dtype) {
  std::string out = "# Written by g4convert for Megatron-Bridge's load_megatron_model (ConfigContainer.to_yaml layout).\n";
  out += "_target_: megatron.bridge.training.config.ConfigContainer\n";
  out += "model:\n";
  const json m = provider_fields(config, params_dtype);
  out += "  _target_: " + m["_target_"].get<std::string>() + "\n";
  for (auto it = m.begin(); it != m.end(); ++it)
    if (it.key() != "_target_") out += "  " + it.key() + ": " + yaml_value(it.value()) + "\n";
  out += "checkpoint:\n";
  out += "  _target_: megatron.bridge.training.config.CheckpointConfig\n";
  out += "  ckpt_format: torch_dist\n  save_optim: false\n  save_rng: false\n  fully_parallel_save: true\n";
  return out;
}

Status copy_hf_assets(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::is_directory(from, ec)) return {};  // nothing to copy (e.g. a checkpoint Megatron wrote without assets)
  for (const auto& entry : fs::directory_iterator(from, ec)) {
    if (!entry.is_regular_file() || !is_asset(entry.path())) continue;
    fs::create_directories(to, ec);
    if (ec) return Status::io_error(to.string() + ": cannot create: " + ec.message());
    fs::copy_file(entry.path(), to / entry.path().filename(), fs::copy_options::overwrite_existing, ec);
    if (ec) return Status::io_error(entry.path().string() + ": cannot copy: " + ec.message());
  }
  if (ec) return Status::io_error(from.string() + ": cannot list: " + ec.message());
  return {};
}

Status write_megatron_side_files(const fs::path& root, const fs::path& iter, const gemma4::ModelConfig& config,
                                 IterationLayout layout, DType params_dtype) {
  // json.dump(asdict(CheckpointingConfig)) with Python's separators; the 4 keys every MCore version accepts.
  G4_RETURN_IF_ERROR(write_file_synced(iter / "metadata.json",
                                       "{\"sharded_backend\": \"torch_dist\", \"sharded_backend_version\": 1, "
                                       "\"common_backend\": \"torch\", \"common_backend_version\": 1}"));
  G4_RETURN_IF_ERROR(write_common(iter / "common.pt"));
  G4_RETURN_IF_ERROR(write_file_synced(iter / "run_config.yaml", run_config_yaml(config, params_dtype)));
  G4_RETURN_IF_ERROR(write_file_synced(iter / kHfConfigFile, gemma4::to_hf_json(config).dump(2) + "\n"));
  G4_RETURN_IF_ERROR(write_train_state(iter / "train_state.pt"));
  if (layout == IterationLayout::kBridge) G4_RETURN_IF_ERROR(write_train_state(root / "latest_train_state.pt"));
  return write_file_synced(root / "latest_checkpointed_iteration.txt", layout == IterationLayout::kRelease ? "release" : "0");
}

}  // namespace g4::convert
