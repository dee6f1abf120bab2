// A C ABI over libtorch's c10d: a TCPStore rendezvous and a Gloo process group, so the
// Rust engine can all-reduce gradients with the library PyTorch's DDP uses. Every entry
// point catches C++ exceptions and returns their message (heap string, freed by
// dfl_c10d_free_error); a null return means success. Tensors arrive as `at::Tensor*`,
// which is what tch's `as_mut_ptr()` hands out.
#define USE_C10D_GLOO 1

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
};

char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) std::memcpy(out, message.c_str(), message.size() + 1);
  return out;
}

template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception in c10d");
  }
}

void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works) {
  for (auto& work : works) work->wait();
}

}  // namespace

extern "C" {

void dfl_c10d_free_error(char* message) { std::free(message); }

// Rank 0 hosts the TCPStore on host:port and waits for the others; every rank then joins
// the Gloo group over the loopback (or the given host's) interface. timeout_ms bounds
// both the rendezvous and every later collective.
char* dfl_c10d_new(const char* host, int port, int rank, int world_size, long timeout_ms,
                   void** out) {
  return guarded([&] {
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(port);
    store_options.isServer = rank == 0;
    store_options.numWorkers = world_size;
    store_options.waitWorkers = true;
    store_options.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), store_options);
    auto store = c10::make_intrusive<c10d::PrefixStore>("difflow", tcp);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    options->threads = 1;
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
    *out = new Group{tcp, gloo};
  });
}

// Sums each tensor across ranks in place: all are issued first, then awaited, so one
// call with many tensors measures the per-parameter cost fairly against one flat buffer.
char* dfl_c10d_all_reduce_sum(void* group, void** tensors, int count) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    for (int i = 0; i < count; ++i) {
      std::vector<at::Tensor> one{*static_cast<at::Tensor*>(tensors[i])};
      works.push_back(g->gloo->allreduce(one, options));
    }
    wait_all(works);
  });
}

char* dfl_c10d_broadcast(void* group, void* tensor, int root) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> one{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    g->gloo->broadcast(one, options)->wait();
  });
}

char* dfl_c10d_barrier(void* group) {
  return guarded([&] { static_cast<Group*>(group)->gloo->barrier()->wait(); });
}

void dfl_c10d_free(void* group) { delete static_cast<Group*>(group); }

}  // extern "C"
