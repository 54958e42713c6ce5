#include "runtime/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include <nlohmann/json.hpp>

#include "runtime/output_dir.h"

namespace g4 {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

struct Chunk {
  size_t tensor;
  uint64_t offset;  // within the tensor
  uint64_t len;
  uint64_t file_offset;
};

}  // namespace

std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& specs, uint64_t max_shard_bytes) {
  std::vector<ShardPlan> shards;
  for (size_t i = 0; i < specs.size(); ++i) {
    uint64_t size = specs[i].nbytes();
    bool oversized = size > max_shard_bytes;
    if (shards.empty() || oversized || shards.back().data_bytes + size > max_shard_bytes) shards.emplace_back();
    shards.back().tensors.push_back(i);
    shards.back().data_bytes += size;
    if (oversized) shards.emplace_back();  // nothing may join an oversized tensor's shard
  }
  if (!shards.empty() && shards.back().tensors.empty()) shards.pop_back();
  if (shards.empty()) shards.emplace_back();  // an empty checkpoint is still one (empty) file
  for (size_t i = 0; i < shards.size(); ++i)
    shards[i].file_name = shards.size() == 1 ? "model.safetensors" : shard_name(i, shards.size());
  return shards;
}

std::string safetensors_header(const std::vector<TensorSpec>& specs, const std::vector<size_t>& order) {
  json h = json::object();
  h["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (size_t i : order) {
    const TensorSpec& t = specs[i];
    h[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

static Status write_shard(const fs::path& path, const std::vector<TensorSpec>& specs, const ShardPlan& shard,
                          const TensorFill& fill, const SafetensorsWriteOptions& options,
                          std::atomic<uint64_t>& bytes_done, std::atomic<size_t>& tensors_done, std::mutex& progress_mu) {
  const std::string file = path.string();
  const std::string header = safetensors_header(specs, shard.tensors);
  const uint64_t data_start = 8 + header.size();
  const uint64_t file_size = data_start + shard.data_bytes;

  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::io_error(file + ": cannot create: " + std::strerror(errno));
  struct Closer { int fd; ~Closer() { if (fd >= 0) ::close(fd); } } closer{fd};

  // Reserve the space first so a full disk fails here, before any work, not halfway through.
  if (int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(file_size)); rc != 0 && rc != EOPNOTSUPP && rc != EINVAL)
    return Status::io_error(file + ": cannot reserve " + std::to_string(file_size) + " bytes: " + std::strerror(rc));

  std::byte len_le[8];
  uint64_t header_len = header.size();
  std::memcpy(len_le, &header_len, 8);
  G4_RETURN_IF_ERROR(pwrite_all(fd, len_le, 8, 0, file));
  G4_RETURN_IF_ERROR(pwrite_all(fd, reinterpret_cast<const std::byte*>(header.data()), header.size(), 8, file));

  std::vector<Chunk> chunks;
  std::vector<size_t> chunks_left;  // per tensor position in shard, to count finished tensors
  uint64_t cursor = data_start;
  for (size_t pos = 0; pos < shard.tensors.size(); ++pos) {
    size_t t = shard.tensors[pos];
    uint64_t n = specs[t].nbytes();
    size_t count = 0;
    uint64_t off = 0;
    do {  // an empty tensor still gets one (empty) chunk, so it is counted as written
      uint64_t len = std::min<uint64_t>(options.chunk_bytes, n - off);
      chunks.push_back({pos, off, len, cursor + off});
      ++count;
      off += len;
    } while (off < n);
    chunks_left.push_back(count);
    cursor += n;
  }
  std::vector<std::atomic<size_t>> remaining(chunks_left.size());
  for (size_t i = 0; i < chunks_left.size(); ++i) remaining[i] = chunks_left[i];

  auto run_chunk = [&](size_t ci) -> Status {
    const Chunk& c = chunks[ci];
    size_t t = shard.tensors[c.tensor];
    thread_local std::vector<std::byte> buffer;
    buffer.resize(c.len);
    if (c.len > 0) {
      Status s = fill(t, c.offset, std::span<std::byte>(buffer.data(), c.len));
      if (!s.ok()) return s.with_context("tensor '" + specs[t].name + "'");
      G4_RETURN_IF_ERROR(pwrite_all(fd, buffer.data(), c.len, c.file_offset, file));
    }
    bytes_done += c.len;
    if (--remaining[c.tensor] == 0) ++tensors_done;
    if (options.on_progress) {
      std::lock_guard<std::mutex> lock(progress_mu);
      options.on_progress(bytes_done.load(), tensors_done.load());
    }
    return {};
  };

  if (options.pool) {
    G4_RETURN_IF_ERROR(parallel_for_status(*options.pool, chunks.size(), options.pool->size() * 2, run_chunk));
  } else {
    for (size_t i = 0; i < chunks.size(); ++i) G4_RETURN_IF_ERROR(run_chunk(i));
  }
  if (::fsync(fd) != 0) return Status::io_error(file + ": fsync failed: " + std::strerror(errno));
  closer.fd = -1;
  if (::close(fd) != 0) return Status::io_error(file + ": close failed: " + std::strerror(errno));
  return {};
}

Status write_safetensors_checkpoint(const fs::path& dir, const std::vector<TensorSpec>& specs, const TensorFill& fill,
                                    const SafetensorsWriteOptions& options) {
  if (options.chunk_bytes == 0) return Status::invalid_argument("chunk size must be positive");
  std::vector<ShardPlan> shards = plan_shards(specs, options.max_shard_bytes);
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<size_t> tensors_done{0};
  std::mutex progress_mu;
  for (const ShardPlan& shard : shards)
    G4_RETURN_IF_ERROR(write_shard(dir / shard.file_name, specs, shard, fill, options, bytes_done, tensors_done, progress_mu));
  if (shards.size() == 1) return {};

  json index;
  uint64_t total = 0;
  json weight_map = json::object();
  for (const ShardPlan& shard : shards)
    for (size_t t : shard.tensors) {
      weight_map[specs[t].name] = shard.file_name;
      total += specs[t].nbytes();
    }
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = weight_map;
  return write_file_synced(dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

Status write_safetensors_file(const fs::path& path, const std::vector<TensorSpec>& specs, const TensorFill& fill,
                              const SafetensorsWriteOptions& options) {
  if (options.chunk_bytes == 0) return Status::invalid_argument("chunk size must be positive");
  ShardPlan all;
  for (size_t i = 0; i < specs.size(); ++i) {
    all.tensors.push_back(i);
    all.data_bytes += specs[i].nbytes();
  }
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<size_t> tensors_done{0};
  std::mutex progress_mu;
  return write_shard(path, specs, all, fill, options, bytes_done, tensors_done, progress_mu);
}

Result<uint64_t> parse_byte_size(std::string_view text) {
  std::string s(text);
  size_t digits = 0;
  while (digits < s.size() && (std::isdigit(static_cast<unsigned char>(s[digits])) || s[digits] == '.')) ++digits;
  if (digits == 0) return Status::invalid_argument("size '" + s + "' does not start with a number");
  double value = 0;
  try {
    value = std::stod(s.substr(0, digits));
  } catch (...) {
    return Status::invalid_argument("size '" + s + "' is not a number");
  }
  std::string unit = s.substr(digits);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  else if (unit == "TIB") mult = 1024.0 * 1024 * 1024 * 1024;
  else return Status::invalid_argument("size '" + s + "' has an unknown unit '" + unit + "' (use B, KB, MB, GB, KiB, MiB, GiB)");
  double bytes = value * mult;
  if (bytes < 1 || bytes > 1e18) return Status::invalid_argument("size '" + s + "' is out of range");
  return static_cast<uint64_t>(bytes);
}

}  // namespace g4
