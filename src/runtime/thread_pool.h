// A fixed-size worker pool so that reading, transforming and writing overlap.
// submit() is thread-safe; the destructor drains the queue and joins the workers.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace g4 {

// The worker count for a request: 0 means one per core; more than kMaxThreadsPerCore per core (or
// kMaxThreads in all) only adds contention and file handles, so requests are capped there.
inline constexpr unsigned kMaxThreadsPerCore = 4, kMaxThreads = 256;
unsigned effective_threads(unsigned requested);

class ThreadPool {
 public:
  // `threads` goes through effective_threads(). When the system refuses a thread, the pool keeps the
  // workers it has (at least one; none at all throws std::system_error, for main's handler).
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size(); }

  template <class F>
  auto submit(F&& fn) -> std::future<decltype(fn())> {
    using R = decltype(fn());
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    std::future<R> result = task->get_future();
    enqueue([task] { (*task)(); });
    return result;
  }

 private:
  void enqueue(std::function<void()> job);
  void work();

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// Runs fn(i) for i in [0, n) on the pool and waits; returns the first non-OK Status (all tasks still finish).
// `max_in_flight` bounds how many run at once (and so how much memory their buffers take).
template <class StatusFn>
auto parallel_for_status(ThreadPool& pool, size_t n, size_t max_in_flight, StatusFn fn) -> decltype(fn(size_t{})) {
  using S = decltype(fn(size_t{}));
  std::deque<std::future<S>> in_flight;
  S first;
  auto collect_one = [&] {
    S s = in_flight.front().get();
    in_flight.pop_front();
    if (first.ok() && !s.ok()) first = s;
  };
  for (size_t i = 0; i < n; ++i) {
    if (in_flight.size() >= max_in_flight) collect_one();
    if (!first.ok()) break;  // stop scheduling after a failure
    in_flight.push_back(pool.submit([&fn, i] { return fn(i); }));
  }
  while (!in_flight.empty()) collect_one();
  return first;
}

}  // namespace g4
