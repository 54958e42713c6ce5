// g4convert inspect: what a checkpoint is, and everything wrong with it.
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "inspect/hf_inspect.h"

namespace g4::cli {

void add_inspect_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string dir;
    bool scan = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("inspect", "describe a checkpoint and list its problems (exit 1 when there are any)");
  cmd->add_option("dir", args->dir, "checkpoint directory")->required();
  cmd->add_flag("--scan", args->scan, "also read every value: NaN/Inf, tied-head equality");
  cmd->callback([args, &global, &exit_code] {
    ThreadPool pool(global.threads);
    InspectOptions options{args->scan, &pool};
    auto report = inspect_hf(args->dir, options);
    if (!report.ok()) { exit_code = report_error(report.status().message()); return; }
    if (global.json) std::cout << inspect_report_json(*report).dump(2) << "\n";
    else if (!global.quiet) std::cout << inspect_report_text(*report);
    exit_code = report->problems.empty() ? 0 : 1;
  });
}

}  // namespace g4::cli
