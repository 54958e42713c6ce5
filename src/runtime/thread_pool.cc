#include "runtime/thread_pool.h"

#include <algorithm>
#include <system_error>

namespace g4 {

unsigned effective_threads(unsigned requested) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (requested == 0) return cores;
  return std::min({requested, cores * kMaxThreadsPerCore, kMaxThreads});
}

ThreadPool::ThreadPool(size_t threads) {
  const size_t n = effective_threads(static_cast<unsigned>(std::min<size_t>(threads, kMaxThreads)));
  workers_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    try {
      workers_.emplace_back([this] { work(); });
    } catch (const std::system_error&) {
      if (workers_.empty()) throw;
      break;  // fewer workers than asked is still correct
    }
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::enqueue(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  ready_.notify_one();
}

void ThreadPool::work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace g4
