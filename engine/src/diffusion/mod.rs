//! All diffusion math on tensors, in one place. Per-timestep coefficients come from the
//! float64 tables of `difflow::diffusion::schedule`; they are gathered in float64 and cast to
//! the dtype of the tensor they multiply, so a float64 caller gets float64 arithmetic.

pub mod noise;
