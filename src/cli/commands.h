// The subcommands of the g4convert binary. Each registers its options on the app and sets `exit_code`
// when it runs: 0 success, 1 the input has problems (inspect), 2 an error (message already printed).
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "forward/forward_input.h"
#include "runtime/dtype.h"
#include "runtime/output_policy.h"

namespace g4::cli {

struct GlobalOptions {
  bool quiet = false;
  bool json = false;
  unsigned threads = 0;  // 0: all cores
};

void add_synth_command(CLI::App& app, const GlobalOptions& global, int& exit_code);
void add_inspect_command(CLI::App& app, const GlobalOptions& global, int& exit_code);
void add_presets_command(CLI::App& app, const GlobalOptions& global, int& exit_code);
void add_forward_command(CLI::App& app, const GlobalOptions& global, int& exit_code);
void add_hf2mcore_command(CLI::App& app, const GlobalOptions& global, int& exit_code);
void add_mcore2hf_command(CLI::App& app, const GlobalOptions& global, int& exit_code);
void add_roundtrip_command(CLI::App& app, const GlobalOptions& global, int& exit_code);
void add_lora_export_command(CLI::App& app, const GlobalOptions& global, int& exit_code);
void add_lora_merge_command(CLI::App& app, const GlobalOptions& global, int& exit_code);

void add_verify_command(CLI::App& app, const GlobalOptions& global, int& exit_code);

// verify's default input: 16 tokens, long enough to cross the tiny models' sliding window, inside any Gemma 4 vocab.
inline constexpr const char* kDefaultVerifyIds = "2,17,99,3,55,23,11,7,42,64,5,31,88,19,73,26";

// forward's and verify's input: --ids "2,17,…" (one row) or an input.json.
Result<forward::ForwardInput> read_forward_input(const std::string& input_path, const std::string& ids);

// --dtype keep|bf16|fp32 of the converters: nullopt keeps every tensor's dtype.
std::optional<DType> parse_dtype_option(const std::string& text);
void add_version_command(CLI::App& app, int& exit_code);

// Prints "g4convert: error: <message>" on stderr and returns 2.
int report_error(const std::string& message);

// The output policy of a command run: --force, and notices (swept leftovers) printed on stderr.
OutputPolicy output_policy(bool force);

}  // namespace g4::cli
