// g4convert inspect: what a checkpoint is, and everything wrong with it.
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "inspect/hf_inspect.h"

namespace g4::cli {

void add_inspect_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string dir, config;
    bool scan = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("inspect", "describe a checkpoint (HF or Megatron torch_dist) and list its problems (exit 1 when there are any)");
  cmd->add_option("dir", args->dir, "checkpoint directory")->required();
  cmd->add_flag("--scan", args->scan, "also read every value: NaN/Inf, tied-head equality");
  cmd->add_option("--config", args->config, "Megatron checkpoints: the HF config.json to check against (default: its hf_config.json)");
  cmd->callback([args, &global, &exit_code] {
    ThreadPool pool(global.threads);
    InspectOptions options{args->scan, &pool};
    auto report = is_hf_checkpoint(args->dir) ? inspect_hf(args->dir, options) : inspect_mcore(args->dir, options, args->config);
    if (!report.ok()) { exit_code = report_error(report.status().message()); return; }
    if (global.json) std::cout << inspect_report_json(*report).dump(2) << "\n";
    else if (!global.quiet) std::cout << inspect_report_text(*report);
    exit_code = report->problems.empty() ? 0 : 1;
  });
}

}  // namespace g4::cli
