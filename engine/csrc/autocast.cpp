// The autocast setting tch lacks: tch 0.26 turns autocast on and off (`tch::autocast`) but
// cannot choose its dtype, which on CUDA defaults to float16. Compiled against the torch
// headers the worker links, so a change of libtorch's signature fails the build instead of
// binding a stale mangled symbol. Setting a thread-local cannot throw, so this entry point
// needs no error channel (compare ffi_error.hpp).

#include <ATen/autocast_mode.h>

extern "C" {

// CUDA autocast on this thread computes in bfloat16 from now on.
void dfl_autocast_use_bf16_on_cuda() { at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16); }

}  // extern "C"
