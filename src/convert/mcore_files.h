// The files around the DCP data of a Megatron-Bridge torch_dist checkpoint (megatron-checkpoint-format.md
// §1, megatron-bridge-layout.md §4.1): the tracker, iteration directory, metadata.json, common.pt, train
// state and run_config.yaml, laid out the way Megatron-Bridge's save_megatron_model writes them; plus our
// hf_config.json (the complete HF config, so mcore2hf needs no reference) and tokenizer/ assets.
#pragma once

#include <filesystem>
#include <string>

#include "convert/conversion_plan.h"
#include "gemma4/config.h"
#include "runtime/dcp/dcp_writer.h"

namespace g4::convert {

enum class IterationLayout : uint8_t {
  kBridge,   // iter_0000000/, tracker "0", latest_train_state.pt: what Megatron-Bridge's importer writes
  kRelease,  // release/, tracker "release": what Megatron-LM's load_checkpoint loads without --finetune
};

// Where the common (non-sharded) state goes (megatron-checkpoint-format.md §1.2). megatron-core >= 0.19
// (Megatron-Bridge 0.6.2) saves it inside DCP and logs "load_common is deprecated" on a common.pt;
// megatron-core <= 0.18 reads only common.pt and writes the 4-key metadata.json.
enum class CommonStateLayout : uint8_t {
  kDcpObject,  // the `common_state/shard_0_1` byte item, 2-key metadata.json: what megatron-core 0.19 writes
  kCommonPt,   // common.pt, 4-key metadata.json (common_backend fields): for megatron-core <= 0.18
};
// The DCP key of ShardedObject("common_state", global_shape=(1,), global_offset=(0,)).
inline constexpr const char* kCommonStateKey = "common_state/shard_0_1";
// That byte item: torch.save([common dict]), as megatron-core saves any ShardedObject.
dcp::BytesToWrite common_state_item();

std::string iteration_dir_name(IterationLayout layout);  // "iter_0000000" or "release"
inline constexpr const char* kHfConfigFile = "hf_config.json";
inline constexpr const char* kTokenizerDir = "tokenizer";

// Writes everything except the DCP files (with kDcpObject, common_state_item() must be among the DCP byte
// items). `root` is the checkpoint root (temp dir of the output), `iter` its iteration directory, which must exist.
// `text_mode`: run_config.yaml targets the text provider (Megatron-Bridge's text mode builds it from text_config
// alone) while hf_config.json keeps `config`, the conditional form mcore2hf writes back.
Status write_megatron_side_files(const std::filesystem::path& root, const std::filesystem::path& iter,
                                 const gemma4::ModelConfig& config, IterationLayout layout,
                                 DType params_dtype, CommonStateLayout common = CommonStateLayout::kDcpObject,
                                 int64_t pad_vocab = 128, bool text_mode = false);

// run_config.yaml text: a ConfigContainer whose model section targets the provider Megatron-Bridge would
// build for this config, with the fields its Gemma 4 providers read (§3). `pad_vocab`: hf2mcore's --pad-vocab;
// a dense provider's make_vocab_size_divisible_by, so that its build() pads to the stored rows.
std::string run_config_yaml(const gemma4::ModelConfig& config, DType params_dtype, int64_t pad_vocab = 128);

// The small non-weight files of an HF checkpoint (tokenizer, generation, processor, chat template):
// copied to `to`, which is created when there is anything to copy.
Status copy_hf_assets(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace g4::convert
