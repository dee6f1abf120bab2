// What the Gloo shim (c10d_shim.cpp, linked into the worker) and the NCCL shim
// (c10d_nccl.cpp, a shared library loaded only for CUDA stages) share: the group handle,
// the store rendezvous, and turning C++ exceptions into messages.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "ffi_error.hpp"

#include <chrono>
#include <string>
#include <utility>

namespace difflow {

// One rank's process group. Both shims build it; c10d_shim.cpp runs its collectives
// through the Backend interface, which Gloo and NCCL share.
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  // The CUDA device an NCCL group works on (its barrier needs it); -1 for Gloo.
  int64_t cuda_device;
};

// Runs body; null on success, else the exception's message (malloc'ed).
template <typename F>
char* guarded(F&& body) {
  return guarded_in("c10d", std::forward<F>(body));
}

// Rank 0 hosts the TCPStore on host:port and waits for the other ranks to connect.
inline c10::intrusive_ptr<c10d::TCPStore> rendezvous(const char* host, int port, int rank,
                                                     int world_size,
                                                     std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(port);
  options.isServer = rank == 0;
  options.numWorkers = world_size;
  options.waitWorkers = true;
  options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
}

}  // namespace difflow
