// g4convert: Gemma 4 checkpoints between HuggingFace and Megatron-Core, proven by a reference forward.
// This file only wires subcommands; the work lives in the libraries.
#include <cstdio>

#include "cli/commands.h"

namespace g4::cli {

int report_error(const std::string& message) {
  std::fprintf(stderr, "g4convert: error: %s\n", message.c_str());
  return 2;
}

}  // namespace g4::cli

int main(int argc, char** argv) {
  CLI::App app{"g4convert: exact Gemma 4 checkpoint conversion between HuggingFace and Megatron-Core"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand: g4convert inspect DIR --json
  g4::cli::GlobalOptions global;
  app.add_flag("-q,--quiet", global.quiet, "no progress or summary output");
  app.add_flag("--json", global.json, "print the result as JSON on stdout");
  app.add_option("-j,--threads", global.threads, "worker threads (default: all cores)");
  int exit_code = 0;
  g4::cli::add_synth_command(app, global, exit_code);
  g4::cli::add_inspect_command(app, global, exit_code);
  g4::cli::add_forward_command(app, global, exit_code);
  g4::cli::add_hf2mcore_command(app, global, exit_code);
  g4::cli::add_mcore2hf_command(app, global, exit_code);
  g4::cli::add_roundtrip_command(app, global, exit_code);
  g4::cli::add_verify_command(app, global, exit_code);
  g4::cli::add_presets_command(app, global, exit_code);
  g4::cli::add_version_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
