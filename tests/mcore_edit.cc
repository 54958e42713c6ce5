#include "mcore_edit.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "convert/mcore_checkpoint.h"
#include "runtime/dtype.h"

namespace g4::testing {

void edit_mcore_param(const std::filesystem::path& checkpoint, const std::string& key, const std::vector<int64_t>& index,
                      const Shape& shape, const std::function<void(std::vector<float>&)>& edit) {
  struct Location {
    std::filesystem::path file;
    uint64_t offset, begin, size;
  };
  std::vector<Location> where;
  DType dtype;
  std::vector<float> values;
  {
    auto ckpt = convert::McoreCheckpoint::open(checkpoint);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().to_string();
    auto slab = (*ckpt)->read_slab(key, index, shape);
    ASSERT_TRUE(slab.ok()) << slab.status().to_string();
    dtype = (*slab)->dtype;
    values.resize((*slab)->size / dtype_size(dtype));
    for (const auto& part : (*slab)->parts) {
      auto at = (*ckpt)->locate(part.bytes);
      ASSERT_TRUE(at.has_value()) << key << " is not stored as a view";
      where.push_back({at->first, at->second, part.begin, part.bytes.size()});
      to_f32(dtype, part.bytes.data(), values.data() + part.begin / dtype_size(dtype), part.bytes.size() / dtype_size(dtype));
    }
  }
  edit(values);
  std::vector<std::byte> bytes(values.size() * dtype_size(dtype));
  from_f32(dtype, values.data(), bytes.data(), values.size());
  for (const Location& l : where) {
    int fd = ::open(l.file.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << l.file;
    ASSERT_EQ(::pwrite(fd, bytes.data() + l.begin, l.size, static_cast<off_t>(l.offset)), static_cast<ssize_t>(l.size));
    ::close(fd);
  }
}

}  // namespace g4::testing
