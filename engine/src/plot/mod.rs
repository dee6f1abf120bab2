//! Plot writers (PNG via plotters / image).
