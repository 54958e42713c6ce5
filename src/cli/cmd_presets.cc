// g4convert presets: the built-in model structures synth can write, with their configs and schedules.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "gemma4/hf_tensors.h"
#include "gemma4/presets.h"

namespace g4::cli {
namespace {

uint64_t parameter_count(const gemma4::TextConfig& text) {
  gemma4::ModelConfig c;
  c.text = text;
  uint64_t n = 0;
  for (const auto& t : gemma4::hf_text_tensors(c))
    if (!t.optional) n += checked_numel(t.shape).value_or(0);
  return n;
}

}  // namespace

void add_presets_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  CLI::App* cmd = app.add_subcommand("presets", "list the model structures synth can write (--json: configs and schedules)");
  cmd->callback([&global, &exit_code] {
    if (global.json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& p : gemma4::all_presets()) {
        nlohmann::json layers = nlohmann::json::array();
        for (const auto& s : p.text.layers) layers.push_back(gemma4::layer_spec_json(s));
        out.push_back({{"name", p.name}, {"structure", p.structure}, {"description", p.description},
                       {"parameters", parameter_count(p.text)}, {"config", gemma4::text_config_to_json(p.text)},
                       {"layers", layers}});
      }
      std::cout << out.dump(2) << "\n";
    } else {
      for (const auto& p : gemma4::all_presets()) {
        double n = static_cast<double>(parameter_count(p.text));
        char count[32];
        if (n >= 1e9) std::snprintf(count, sizeof count, "%.2fB", n / 1e9);
        else std::snprintf(count, sizeof count, "%.0fK", n / 1e3);
        std::printf("%-14s %-8s %8s params  %s\n", p.name.c_str(), p.structure.c_str(), count, p.description.c_str());
      }
    }
    exit_code = 0;
  });
}

}  // namespace g4::cli
