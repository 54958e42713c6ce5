// The one output policy of every command. A command registers what it reads (protect), then asks for each
// output it writes (directory, file, scratch). The policy
//   - refuses an output that equals, contains or lies inside any input, comparing real paths (symlinks, `..`)
//     and device+inode identities (bind mounts, hard links), with one line naming both;
//   - refuses an existing output unless `force`, and even with `force` never replaces a directory that does
//     not look like an earlier output of the same kind (an HF checkpoint is not replaced by a Megatron one), nor a file with a directory or the other way round;
//   - refuses two outputs of one run that overlap;
//   - sweeps hidden temp siblings of the same target left by a run that was killed (their lock is free and
//     their process gone), telling `notice` what it removed;
//   - hands out OutputDir/OutputFile, which write to a locked temp sibling and rename into place at commit,
//     keeping an old output (with `force`) until the new one is complete.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/output_dir.h"
#include "runtime/status.h"

namespace g4 {

// Whether an existing directory may be replaced by a new output of this kind (with --force).
using ReplaceableDir = std::function<bool(const std::filesystem::path&)>;
// Empty, or holding what an HF safetensors checkpoint holds (config.json, *.safetensors, the index).
bool looks_like_hf_checkpoint_dir(const std::filesystem::path& dir);
// Empty, or holding what a Megatron torch_dist checkpoint holds (.metadata, a tracker, iter_*/release).
bool looks_like_megatron_checkpoint_dir(const std::filesystem::path& dir);

class OutputPolicy {
 public:
  using Notice = std::function<void(const std::string&)>;
  explicit OutputPolicy(bool force = false, Notice notice = {}) : force_(force), notice_(std::move(notice)) {}

  bool force() const { return force_; }
  const Notice& notice() const { return notice_; }
  // Registers an input: a file or directory no output may touch. A directory's symlinked entries (a hub
  // cache's snapshot) are protected where they point too. A path that does not exist protects nothing (its
  // reader reports it).
  void protect(const std::filesystem::path& input);

  // `replaceable` says which existing directory --force may replace: an earlier output of the same kind.
  Result<OutputDir> directory(const std::filesystem::path& target, const ReplaceableDir& replaceable);
  Result<OutputFile> file(const std::filesystem::path& target);
  // A private scratch directory under the system temp dir, named "<prefix>-PID", removed on destruction;
  // stale ones of killed runs are swept.
  Result<OutputDir> scratch(const std::string& prefix);

  // The checks alone, for a target about to be written by `directory` or `file` (exposed for tests and for
  // commands that must fail before doing any work).
  Status check(const std::filesystem::path& target) const;

 private:
  struct Identity {
    dev_t dev;
    ino_t ino;
    bool operator==(const Identity&) const = default;
  };
  struct Protected {
    std::filesystem::path shown;        // as the user named it
    Identity self;
    std::vector<Identity> ancestors;    // of its real path, itself included
  };
  void protect_one(const std::filesystem::path& shown, const std::filesystem::path& path);
  Result<std::filesystem::path> prepare(const std::filesystem::path& target, bool want_dir, const ReplaceableDir& replaceable,
                                        bool& replace);
  void sweep_leftovers(const std::filesystem::path& target) const;
  // Removes the entries of `dir` whose writer is gone; `pid_of` gives an entry's PID text, empty for others.
  void sweep(const std::filesystem::path& dir, const std::function<std::string_view(std::string_view name)>& pid_of) const;

  bool force_;
  Notice notice_;
  std::vector<Protected> inputs_;
  std::vector<std::filesystem::path> claimed_;  // real paths of this run's outputs
};

}  // namespace g4
