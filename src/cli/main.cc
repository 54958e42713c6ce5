// g4convert: Gemma 4 checkpoints between HuggingFace and Megatron-Core, proven by a reference forward.
// This file only wires subcommands; the work lives in the libraries.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include "cli/commands.h"
#include "runtime/thread_pool.h"

namespace g4::cli {

int report_error(const std::string& message) {
  std::fprintf(stderr, "g4convert: error: %s\n", message.c_str());
  return 2;
}

OutputPolicy output_policy(bool force) {
  return OutputPolicy(force, [](const std::string& note) { std::fprintf(stderr, "g4convert: note: %s\n", note.c_str()); });
}

namespace {

// -j N: a number, capped at what helps (effective_threads), with a note when capped.
std::string cap_threads(const std::string& text) {
  unsigned long long n = 0;
  try {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) throw std::invalid_argument(text);
    size_t used = 0;
    n = std::stoull(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    throw CLI::ValidationError("'" + text + "' is not a thread count (-j takes 0 for all cores, or a positive number)");
  }
  const unsigned requested = static_cast<unsigned>(std::min<unsigned long long>(n, kMaxThreads * 1000ull));
  const unsigned used = effective_threads(requested);
  if (n != 0 && used != n) std::fprintf(stderr, "g4convert: note: -j %llu capped at %u threads\n", n, used);
  return std::to_string(n == 0 ? 0u : used);
}

int run(int argc, char** argv) {
  CLI::App app{"g4convert: exact Gemma 4 checkpoint conversion between HuggingFace and Megatron-Core"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand: g4convert inspect DIR --json
  GlobalOptions global;
  app.add_flag("-q,--quiet", global.quiet, "no progress or summary output");
  app.add_flag("--json", global.json, "print the result as JSON on stdout");
  app.add_option("-j,--threads", global.threads, "worker threads (default: all cores; capped at 4 per core)")->transform(cap_threads);
  int exit_code = 0;
  add_synth_command(app, global, exit_code);
  add_inspect_command(app, global, exit_code);
  add_forward_command(app, global, exit_code);
  add_hf2mcore_command(app, global, exit_code);
  add_mcore2hf_command(app, global, exit_code);
  add_roundtrip_command(app, global, exit_code);
  add_lora_export_command(app, global, exit_code);
  add_lora_merge_command(app, global, exit_code);
  add_verify_command(app, global, exit_code);
  add_presets_command(app, global, exit_code);
  add_version_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    return report_error(std::string(e.what()) + " (g4convert --help lists the commands and options)");
  }
  // A result that could not be written (a full disk, a closed pipe) is a failure, not a success.
  std::cout.flush();
  if (std::fflush(stdout) != 0 || std::ferror(stdout) || !std::cout)
    return report_error(std::string("cannot write the output to standard output: ") + std::strerror(errno));
  return exit_code;
}

}  // namespace
}  // namespace g4::cli

// Nothing may escape as a crash: whatever a library lets through becomes one line and exit 2, after the
// stack unwinds (so every OutputDir removes its temp directory).
int main(int argc, char** argv) {
  try {
    return g4::cli::run(argc, argv);
  } catch (const std::bad_alloc&) {
    return g4::cli::report_error("out of memory (the input asks for more than this machine can hold)");
  } catch (const std::exception& e) {
    return g4::cli::report_error(std::string("internal error: ") + e.what());
  } catch (...) {
    return g4::cli::report_error("internal error: unknown exception");
  }
}
