// A C ABI over libtorch's c10d: a TCPStore rendezvous and a Gloo process group, so the
// Rust engine can all-reduce gradients with the library PyTorch's DDP uses. Every entry
// point catches C++ exceptions and returns their message (heap string, freed by
// dfl_c10d_free_error); a null return means success. Tensors arrive as `at::Tensor*`,
// which is what tch's `as_mut_ptr()` hands out. The collectives go through c10d's Backend
// interface, so they serve the NCCL groups that c10d_nccl.cpp creates as well.
#define USE_C10D_GLOO 1

#include "c10d_common.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <vector>

using difflow::Group;
using difflow::guarded;

extern "C" {

void dfl_c10d_free_error(char* message) { std::free(message); }

// Rank 0 hosts the TCPStore on host:port and waits for the others; every rank then joins
// the Gloo group over the given host's interface. timeout_ms bounds both the rendezvous
// and every later collective.
char* dfl_c10d_new(const char* host, int port, int rank, int world_size, long timeout_ms,
                   void** out) {
  return guarded([&] {
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    auto tcp = difflow::rendezvous(host, port, rank, world_size, timeout);
    auto store = c10::make_intrusive<c10d::PrefixStore>("difflow", tcp);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // On the loopback every rank is on this machine; across nodes each rank talks through
    // its own host's interface (the store's host is only rank 0's).
    const std::string store_host(host);
    const bool loopback = store_host == "127.0.0.1" || store_host == "localhost";
    options->devices.push_back(loopback
                                   ? c10d::ProcessGroupGloo::createDeviceForHostname(store_host)
                                   : c10d::ProcessGroupGloo::createDefaultDevice());
    options->threads = 1;
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
    *out = new Group{tcp, gloo, -1};
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
      works.push_back(g->backend->allreduce(one, options));
    }
    for (auto& work : works) work->wait();
  });
}

char* dfl_c10d_broadcast(void* group, void* tensor, int root) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> one{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    g->backend->broadcast(one, options)->wait();
  });
}

char* dfl_c10d_barrier(void* group) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    c10d::BarrierOptions options;
    if (g->cuda_device >= 0) options.device_ids = {g->cuda_device};
    g->backend->barrier(options)->wait();
  });
}

// An NCCL group is shut down first, as torch.distributed.destroy_process_group does: its
// destructor alone would warn that the communicators leaked. Nothing here may throw.
void dfl_c10d_free(void* group) {
  auto* g = static_cast<Group*>(group);
  if (g->cuda_device >= 0) {
    try {
      g->backend->shutdown();
    } catch (...) {
    }
  }
  delete g;
}

}  // extern "C"
