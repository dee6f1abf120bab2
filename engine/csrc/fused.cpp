// Fused inference kernels for the engine's UNet, behind a C ABI. `dfl_group_norm_silu`
// does GroupNorm, the residual blocks' per-sample scale-shift (or added embedding) and
// SiLU in one kernel: a statistics pass over each (sample, group), then one pass that
// normalises, applies the affine maps and SiLU and writes once. ATen's composition reads
// and writes the activation three or four times.
//
// Entry points catch every C++ exception and return its message (heap string, freed by
// dfl_fused_free_error); null means success. Tensors arrive as `at::Tensor*`, which is
// what tch's `as_ptr()` hands out; a result is returned as a new `at::Tensor*` that tch
// takes ownership of. build.rs compiles this file with ATen's portable vectors, and on
// x86-64 a second time with AVX2+FMA as `dfl_group_norm_silu_avx2` (DFL_FUSED_AVX2_COPY),
// which the Rust side calls only on CPUs that have both; a target that has AVX2 anyway
// (`-C target-cpu=native`) gets the AVX2 build alone.
#include <ATen/ATen.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/core/GradMode.h>

#include "ffi_error.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

namespace {

using Vec = at::vec::Vectorized<float>;

template <typename F>
char* guarded(F&& body) {
  return difflow::guarded_in("the fused kernels", std::forward<F>(body));
}

// Mean and sum of squared deviations of a group, merged run by run (Chan et al.) in
// double: the whole group at once, or channel by channel when each channel gets its own
// added value. Each run's sums are taken in float vectors around its first value, which
// keeps them accurate when the mean is large against the spread.
struct Moments {
  double count = 0, mean = 0, m2 = 0;

  void merge(double n, double row_mean, double row_m2) {
    const double total = count + n;
    const double delta = row_mean - mean;
    mean += delta * n / total;
    m2 += row_m2 + delta * delta * count * n / total;
    count = total;
  }
};

// Flushing the float accumulators into double every few thousand values bounds their
// rounding error on large feature maps.
constexpr int64_t kFlush = 2048;

void row_moments(const float* row, int64_t n, float offset, Moments& moments) {
  const float pilot = row[0];
  const Vec pilot_vec(pilot);
  double s1 = 0, s2 = 0;
  for (int64_t start = 0; start < n; start += kFlush) {
    const int64_t end = std::min(n, start + kFlush);
    Vec v1(0.f), v2(0.f);
    int64_t i = start;
    for (; i + Vec::size() <= end; i += Vec::size()) {
      const Vec d = Vec::loadu(row + i) - pilot_vec;
      v1 = v1 + d;
      v2 = at::vec::fmadd(d, d, v2);
    }
    float lanes1[Vec::size()], lanes2[Vec::size()];
    v1.store(lanes1);
    v2.store(lanes2);
    for (int k = 0; k < Vec::size(); ++k) {
      s1 += lanes1[k];
      s2 += lanes2[k];
    }
    for (; i < end; ++i) {
      const double d = row[i] - pilot;
      s1 += d;
      s2 += d * d;
    }
  }
  const double nd = static_cast<double>(n);
  moments.merge(nd, pilot + offset + s1 / nd, std::max(0.0, s2 - s1 * s1 / nd));
}

// out = silu?(x·a + b) over one row, vectorised; SiLU as v / (1 + e^−v).
void row_affine(const float* in, float* out, int64_t n, float a, float b, bool silu) {
  const Vec a_vec(a), b_vec(b), one(1.f);
  auto apply = [&](Vec x) {
    Vec v = at::vec::fmadd(x, a_vec, b_vec);
    return silu ? v / (one + v.neg().exp_u20()) : v;
  };
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) apply(Vec::loadu(in + i)).store(out + i);
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    apply(Vec::loadu(in + i, rest)).store(out + i, rest);
  }
}

// A [B, C] float view of an optional per-sample, per-channel tensor ([B, C] or
// [B, C, 1, 1], any strides), contiguous.
std::optional<at::Tensor> per_sample(const at::Tensor* t, int64_t batch, int64_t channels, const char* what) {
  if (t == nullptr) return std::nullopt;
  TORCH_CHECK(t->scalar_type() == at::kFloat && t->device().is_cpu(), what, " must be a float32 CPU tensor");
  TORCH_CHECK(t->numel() == batch * channels, what, " must have ", batch, "x", channels, " values, not ",
              t->sizes());
  return t->reshape({batch, channels}).contiguous();
}

struct Args {
  int64_t batch, channels, groups, spatial;
  double eps;
  const float *x, *gamma, *beta, *add, *scale, *shift;
  float* out;
  bool silu;
};

void group_norm_silu_kernel(const Args& a) {
  const int64_t per_group = a.channels / a.groups;
  const int64_t tasks = a.batch * a.groups;
  // OpenMP itself rather than at::parallel_for: that inline template keeps, in this object,
  // its own per-thread "initialised" flag, and its first call on a thread resets the thread's
  // team size to the process default (undoing a batch lane's single thread).
#pragma omp parallel for schedule(static) if (tasks > 1 && !omp_in_parallel())
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / a.groups;
    const int64_t first = b * a.channels + (task % a.groups) * per_group;  // [b, c] index
    Moments moments;
    if (a.add == nullptr) {  // the group is one contiguous run
      row_moments(a.x + first * a.spatial, per_group * a.spatial, 0.f, moments);
    } else {
      for (int64_t c = first; c < first + per_group; ++c) row_moments(a.x + c * a.spatial, a.spatial, a.add[c], moments);
    }
    const double rstd = 1.0 / std::sqrt(moments.m2 / moments.count + a.eps);
    for (int64_t c = first; c < first + per_group; ++c) {
      const int64_t channel = c - b * a.channels;
      const double factor = a.scale ? 1.0 + a.scale[c] : 1.0;
      const double g = rstd * a.gamma[channel];
      const double offset = a.add ? a.add[c] : 0.0;
      const double bias = ((offset - moments.mean) * g + a.beta[channel]) * factor + (a.shift ? a.shift[c] : 0.0);
      row_affine(a.x + c * a.spatial, a.out + c * a.spatial, a.spatial, static_cast<float>(g * factor),
                 static_cast<float>(bias), a.silu);
    }
  }
}

}  // namespace

extern "C" {

#ifndef DFL_FUSED_AVX2_COPY
void dfl_fused_free_error(char* message) { std::free(message); }

// Whether autograd records operations on this thread (false under no_grad and inference
// mode): the fused kernel has no backward, so the caller takes ATen's path when it does.
int dfl_fused_grad_enabled() { return c10::GradMode::is_enabled() ? 1 : 0; }
#define DFL_GROUP_NORM_SILU dfl_group_norm_silu
#else
#define DFL_GROUP_NORM_SILU dfl_group_norm_silu_avx2
#endif

// silu?((GN(x + add) · (1 + scale) + shift)): x float32 [B, C, ...] contiguous, GroupNorm
// with `groups` groups, ε `eps` and affine gamma/beta [C]; add, scale and shift are
// optional (null) per-sample [B, C] tensors. Writes a new tensor to *out.
char* DFL_GROUP_NORM_SILU(const at::Tensor* x, int64_t groups, double eps, const at::Tensor* gamma,
                          const at::Tensor* beta, const at::Tensor* add, const at::Tensor* scale,
                          const at::Tensor* shift, int silu, at::Tensor** out) {
  return guarded([&] {
    TORCH_CHECK(x->scalar_type() == at::kFloat && x->device().is_cpu(), "x must be a float32 CPU tensor");
    TORCH_CHECK(x->dim() >= 2 && x->is_contiguous(), "x must be a contiguous [B, C, ...] tensor, not ", x->sizes());
    const int64_t batch = x->size(0), channels = x->size(1);
    TORCH_CHECK(groups > 0 && channels % groups == 0, channels, " channels do not split into ", groups, " groups");
    for (const at::Tensor* p : {gamma, beta}) {
      TORCH_CHECK(p->scalar_type() == at::kFloat && p->device().is_cpu() && p->numel() == channels,
                  "gamma and beta must be float32 CPU tensors of ", channels, " values");
    }
    const at::Tensor g = gamma->contiguous(), b = beta->contiguous();
    const auto added = per_sample(add, batch, channels, "the added embedding");
    const auto sc = per_sample(scale, batch, channels, "scale");
    const auto sh = per_sample(shift, batch, channels, "shift");
    at::Tensor result = at::empty_like(*x);
    const int64_t spatial = batch * channels == 0 ? 0 : x->numel() / (batch * channels);
    if (spatial > 0) {
      auto data = [](const std::optional<at::Tensor>& t) { return t ? t->data_ptr<float>() : nullptr; };
      Args args{batch,        channels,       groups,     spatial,    eps,       x->data_ptr<float>(),
                g.data_ptr<float>(), b.data_ptr<float>(), data(added), data(sc), data(sh),
                result.data_ptr<float>(), silu != 0};
      group_norm_silu_kernel(args);
    }
    *out = new at::Tensor(std::move(result));
  });
}

}  // extern "C"
