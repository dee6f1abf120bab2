// The NCCL process group, for data-parallel stages on CUDA devices. Built by build.rs as
// its own shared library (linked to libtorch_cuda) and loaded by the worker only when a
// CUDA stage runs data-parallel, so CPU runs never load the CUDA libraries. The group it
// returns is driven by c10d_shim.cpp's collectives, as a Gloo group is.
#define USE_C10D_NCCL 1

#include "c10d_common.hpp"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

extern "C" {

// As dfl_c10d_new, on CUDA device `cuda_device` (each rank its own).
char* dfl_c10d_new_nccl(const char* host, int port, int rank, int world_size,
                        long timeout_ms, int cuda_device, void** out) {
  return difflow::guarded([&] {
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(cuda_device));
    auto tcp = difflow::rendezvous(host, port, rank, world_size, timeout);
    auto store = c10::make_intrusive<c10d::PrefixStore>("difflow", tcp);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
    *out = new difflow::Group{tcp, nccl, cuda_device};
  });
}

}  // extern "C"
