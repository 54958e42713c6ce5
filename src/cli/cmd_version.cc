// g4convert version: the build, whether CUDA was compiled in and sees a device, and the --device values that work.
#include <cstdio>

#include "cli/commands.h"
#include "runtime/cuda_info.h"

namespace g4::cli {

void add_version_command(CLI::App& app, int& exit_code) {
  CLI::App* cmd = app.add_subcommand("version", "print the version and the CUDA status");
  cmd->callback([&exit_code] {
    std::printf("g4convert %s\n", G4CONVERT_VERSION);
    std::printf("cuda: %s\n", cuda_status().c_str());
    std::printf("devices: cpu%s\n", cuda_device_count() > 0 ? ", cuda" : "");
    exit_code = 0;
  });
}

}  // namespace g4::cli
