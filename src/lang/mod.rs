pub mod pipeline;
pub mod value;
