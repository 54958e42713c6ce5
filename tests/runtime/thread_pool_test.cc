#include "runtime/thread_pool.h"

#include <atomic>

#include "runtime/status.h"
#include "test_support.h"

namespace g4 {
namespace {

TEST(ThreadPool, ParallelForRunsEveryIndexOnce) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> hits(1000);
  Status s = parallel_for_status(pool, hits.size(), 8, [&](size_t i) {
    hits[i]++;
    return Status();
  });
  ASSERT_OK(s);
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPool, ParallelForReturnsTheFirstErrorAndStopsScheduling) {
  ThreadPool pool(2);
  std::atomic<int> ran{0};
  Status s = parallel_for_status(pool, 10000, 2, [&](size_t i) {
    ran++;
    return i == 5 ? Status::io_error("disk full") : Status();
  });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "disk full");
  EXPECT_LT(ran.load(), 10000);
}

TEST(ThreadPool, BoundsTasksInFlight) {
  ThreadPool pool(4);
  std::atomic<int> running{0}, peak{0};
  Status s = parallel_for_status(pool, 200, 3, [&](size_t) {
    int now = ++running;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {}
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    --running;
    return Status();
  });
  ASSERT_OK(s);
  EXPECT_LE(peak.load(), 3);
}

}  // namespace
}  // namespace g4
