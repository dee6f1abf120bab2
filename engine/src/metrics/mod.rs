//! Sample-quality measures: the FID InceptionV3 and its feature statistics, FID, Inception
//! Score, KID, precision/recall, and classifier accuracy. All reductions run in float64.

pub mod accuracy;
pub mod entry;
pub mod features;
pub mod fid;
pub mod inception;
pub mod inception_score;
pub mod kid;
pub mod precision_recall;
pub mod torch_file;
pub mod trajectory;
