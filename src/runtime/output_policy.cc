#include "runtime/output_policy.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

namespace g4 {
namespace fs = std::filesystem;

namespace {

struct Id {
  dev_t dev;
  ino_t ino;
};

std::optional<Id> identity_of(const fs::path& p, bool follow) {
  struct stat st;
  if ((follow ? ::stat(p.c_str(), &st) : ::lstat(p.c_str(), &st)) != 0) return std::nullopt;
  return Id{st.st_dev, st.st_ino};
}

// The absolute, `..`-free form of a user path, without a trailing slash.
fs::path absolute_target(const fs::path& target) {
  fs::path abs = fs::absolute(target).lexically_normal();
  if (abs.filename().empty() && abs.has_parent_path()) abs = abs.parent_path();
  return abs;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool process_alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// A temp sibling whose writer is gone: its process does not exist and nobody holds its lock.
bool is_leftover(const fs::path& entry, std::string_view pid_text) {
  if (pid_text.size() > 9) return false;
  const pid_t pid = static_cast<pid_t>(std::stol(std::string(pid_text)));
  if (pid == ::getpid() || process_alive(pid)) return false;
  return TempLock::acquire(entry).ok();
}

}  // namespace

namespace {
// Empty, or holding an entry `marks` recognises.
bool empty_or_holds(const fs::path& dir, bool (*marks)(const std::string& name)) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) return false;
  if (it == end) return true;
  for (; it != end; it.increment(ec)) {
    if (ec) return false;
    if (marks(it->path().filename().string())) return true;
  }
  return false;
}
}  // namespace

bool looks_like_hf_checkpoint_dir(const fs::path& dir) {
  return empty_or_holds(dir, [](const std::string& name) { return name == "config.json" || name.ends_with(".safetensors"); });
}

bool looks_like_megatron_checkpoint_dir(const fs::path& dir) {
  return empty_or_holds(dir, [](const std::string& name) {
    return name == ".metadata" || name == "latest_checkpointed_iteration.txt" || name == "latest_train_state.pt" ||
           name == "release" || name.starts_with("iter_");
  });
}

void OutputPolicy::protect_one(const fs::path& shown, const fs::path& path) {
  std::error_code ec;
  const fs::path real = fs::canonical(path, ec);
  if (ec) return;
  auto self = identity_of(real, true);
  if (!self) return;
  Protected p{shown, {self->dev, self->ino}, {}};
  for (fs::path a = real;; a = a.parent_path()) {
    if (auto id = identity_of(a, true)) p.ancestors.push_back({id->dev, id->ino});
    if (a == a.parent_path()) break;
  }
  inputs_.push_back(std::move(p));
}

void OutputPolicy::protect(const fs::path& input) {
  if (input.empty()) return;
  protect_one(input, input);
  std::error_code ec;
  if (!fs::is_directory(input, ec)) return;
  for (fs::directory_iterator it(input, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_symlink(ec)) protect_one(it->path(), it->path());
}

Status OutputPolicy::check(const fs::path& target) const {
  if (target.empty()) return Status::invalid_argument("output path is empty");
  const fs::path abs = absolute_target(target);
  if (abs == abs.root_path() || abs.filename() == "." || abs.filename() == "..")
    return Status::invalid_argument(target.string() + ": not a usable output path");
  std::error_code ec;
  // Where the entry itself will be created or replaced (a final symlink is the entry), and where it leads.
  const fs::path entry = fs::weakly_canonical(abs.parent_path(), ec) / abs.filename();
  const fs::path resolved = fs::weakly_canonical(abs, ec);
  for (const fs::path& real : {entry, resolved}) {
    std::vector<Identity> chain;  // the existing part of `real`, itself included
    for (fs::path a = real;; a = a.parent_path()) {
      if (auto id = identity_of(a, true)) chain.push_back({id->dev, id->ino});
      if (a == a.parent_path()) break;
    }
    const auto self = identity_of(real, true);
    for (const Protected& in : inputs_) {
      if (std::find(chain.begin(), chain.end(), in.self) != chain.end()) {
        const bool same = self && Identity{self->dev, self->ino} == in.self;
        return Status::invalid_argument("output " + target.string() + (same ? " is the input " : " lies inside the input ") +
                                        in.shown.string() + "; refusing to write there (an input is never written, moved or deleted)");
      }
      if (self && std::find(in.ancestors.begin(), in.ancestors.end(), Identity{self->dev, self->ino}) != in.ancestors.end())
        return Status::invalid_argument("output " + target.string() + " contains the input " + in.shown.string() +
                                        "; refusing to write there (an input is never written, moved or deleted)");
    }
    for (const fs::path& other : claimed_) {
      auto [a, b] = std::mismatch(real.begin(), real.end(), other.begin(), other.end());
      if (a == real.end() || b == other.end())
        return Status::invalid_argument("output " + target.string() + " overlaps " + other.string() +
                                        ", another output of this run");
    }
  }
  return {};
}

Result<fs::path> OutputPolicy::prepare(const fs::path& target, bool want_dir, const ReplaceableDir& replaceable, bool& replace) {
  G4_RETURN_IF_ERROR(check(target));
  const fs::path abs = absolute_target(target);
  std::error_code ec;
  if (!fs::is_directory(abs.parent_path(), ec))
    return Status::not_found(target.string() + ": parent directory " + abs.parent_path().string() + " does not exist");
  replace = false;
  const fs::file_status st = fs::symlink_status(abs, ec);
  if (fs::exists(st)) {
    if (!force_) return Status::invalid_argument(target.string() + ": already exists (pass --force to replace it)");
    if (fs::is_symlink(st))
      return Status::invalid_argument(target.string() + ": is a symbolic link; not replacing it, even with --force");
    if (want_dir && !fs::is_directory(st))
      return Status::invalid_argument(target.string() + ": exists and is not a directory; not replacing it, even with --force");
    if (want_dir && replaceable && !replaceable(abs))
      return Status::invalid_argument(target.string() +
                                      ": exists and does not look like an earlier output of this command; not replacing it, "
                                      "even with --force (remove it yourself, or choose another --out)");
    if (!want_dir && !fs::is_regular_file(st))
      return Status::invalid_argument(target.string() + ": exists and is not a regular file; not replacing it, even with --force");
    replace = true;
  }
  sweep_leftovers(abs);
  claimed_.push_back(fs::weakly_canonical(abs.parent_path(), ec) / abs.filename());
  return abs;
}

void OutputPolicy::sweep(const fs::path& dir, const std::function<std::string_view(std::string_view name)>& pid_of) const {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::string_view pid = pid_of(name);
    if (all_digits(pid) && is_leftover(it->path(), pid)) stale.push_back(it->path());
  }
  for (const fs::path& p : stale) {
    std::error_code rm;
    fs::remove_all(p, rm);
    if (notice_) notice_("removed " + p.string() + ", left by an interrupted run" + (rm ? " (partly: " + rm.message() + ")" : ""));
  }
}

void OutputPolicy::sweep_leftovers(const fs::path& abs) const {
  const std::string prefix = "." + abs.filename().string() + ".";
  sweep(abs.parent_path(), [&](std::string_view name) -> std::string_view {
    if (!name.starts_with(prefix)) return {};
    const std::string_view rest = name.substr(prefix.size());
    for (std::string_view tag : {"g4tmp-", "g4old-"})
      if (rest.starts_with(tag)) return rest.substr(tag.size());
    return {};
  });
}

Result<OutputDir> OutputPolicy::directory(const fs::path& target, const ReplaceableDir& replaceable) {
  bool replace = false;
  G4_ASSIGN_OR_RETURN(fs::path abs, prepare(target, true, replaceable, replace));
  const fs::path temp = temp_sibling(abs, "g4tmp");
  std::error_code ec;
  fs::remove_all(temp, ec);  // ours from an earlier run of this same pid number
  if (!fs::create_directory(temp, ec))
    return Status::io_error(target.string() + ": cannot create the temp directory " + temp.string() + ": " +
                            (ec ? ec.message() : "it exists"));
  auto lock = TempLock::acquire(temp);
  if (!lock.ok()) {
    fs::remove_all(temp, ec);
    return lock.status();
  }
  return OutputDir(abs, temp, replace, std::move(*lock));
}

Result<OutputFile> OutputPolicy::file(const fs::path& target) {
  bool replace = false;
  G4_ASSIGN_OR_RETURN(fs::path abs, prepare(target, false, {}, replace));
  const fs::path temp = temp_sibling(abs, "g4tmp");
  std::error_code ec;
  fs::remove_all(temp, ec);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::io_error(target.string() + ": cannot create the temp file " + temp.string() + ": " + std::strerror(errno));
  ::close(fd);
  auto lock = TempLock::acquire(temp);
  if (!lock.ok()) {
    fs::remove(temp, ec);
    return lock.status();
  }
  return OutputFile(abs, temp, replace, std::move(*lock));
}

Result<OutputDir> OutputPolicy::scratch(const std::string& prefix) {
  std::error_code ec;
  const fs::path base = fs::temp_directory_path(ec);
  if (ec) return Status::io_error("no temp directory for scratch files: " + ec.message());
  const std::string lead = prefix + "-";
  sweep(base, [&](std::string_view name) { return name.starts_with(lead) ? name.substr(lead.size()) : std::string_view(); });
  const fs::path dir = base / (prefix + "-" + std::to_string(::getpid()));
  fs::remove_all(dir, ec);
  if (!fs::create_directory(dir, ec)) return Status::io_error(dir.string() + ": cannot create: " + ec.message());
  G4_ASSIGN_OR_RETURN(TempLock lock, TempLock::acquire(dir));
  return OutputDir(dir, dir, false, std::move(lock));
}

}  // namespace g4
