// Writes to files on a thread of its own, in the order they were queued, so a
// trace's rows and lines reach the page cache while the host does its other
// work (a decode step traced at every layer writes megabytes). A write's
// bytes stay owned by the caller until a wait covering its ticket returns.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "stage_lines.h"
#include "tensor.h"

namespace greta {

class FileQueue {
 public:
  FileQueue() : thread_([this] { run(); }) {}
  ~FileQueue() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  FileQueue(const FileQueue&) = delete;
  FileQueue& operator=(const FileQueue&) = delete;

  // Queues a write of len bytes at data to fd (at the file's end when it was
  // opened to append); returns its ticket.
  uint64_t push(int fd, const uint8_t* data, size_t len, std::string label) {
    std::lock_guard<std::mutex> l(mu_);
    jobs_.push_back({fd, data, len, nullptr, std::move(label), ++queued_});
    cv_.notify_all();
    return queued_;
  }

  // Queues stage records' lines, formatted on the queue's thread, to fd.
  uint64_t push(int fd, std::unique_ptr<const StageLines> lines, std::string label) {
    std::lock_guard<std::mutex> l(mu_);
    jobs_.push_back({fd, nullptr, 0, std::move(lines), std::move(label), ++queued_});
    cv_.notify_all();
    return queued_;
  }

  // Returns once every write up to `ticket` is done; throws the first failure.
  void wait(uint64_t ticket) {
    std::unique_lock<std::mutex> l(mu_);
    done_cv_.wait(l, [&] { return done_ >= ticket || !error_.empty(); });
    if (!error_.empty()) throw GretaError("EIO", error_);
  }

  uint64_t done() {
    std::lock_guard<std::mutex> l(mu_);
    return done_;
  }

 private:
  struct Job {
    int fd;
    const uint8_t* data;
    size_t len;
    std::unique_ptr<const StageLines> lines;  // instead of data: formatted here
    std::string label;
    uint64_t ticket;
  };

  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<Job> jobs_;
  uint64_t queued_ = 0, done_ = 0;
  std::string error_;  // the first failure; later writes are dropped
  bool stop_ = false;
  std::thread thread_;

  void run() {
    for (;;) {
      Job j;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        j = std::move(jobs_.front());
        jobs_.pop_front();
      }
      std::string err;
      {
        std::lock_guard<std::mutex> l(mu_);
        err = error_;
      }
      std::string text;
      if (j.lines && err.empty()) {
        j.lines->format(text);
        j.data = reinterpret_cast<const uint8_t*>(text.data());
        j.len = text.size();
      }
      for (size_t off = 0; err.empty() && off < j.len;) {
        const ssize_t n = ::write(j.fd, j.data + off, j.len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) err = "writing " + j.label + ": " + std::strerror(n < 0 ? errno : EIO);
        else off += static_cast<size_t>(n);
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        if (error_.empty()) error_ = err;
        done_ = j.ticket;
      }
      done_cv_.notify_all();
    }
  }
};

}  // namespace greta
