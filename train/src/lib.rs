//! # train: putting it together
//!
//! The losses, the optimiser, the toy dataset and the training loop that
//! turn the `model` crate's random weights into a model that matches images
//! with captions and writes captions of its own.

pub mod data;
pub mod eval;

pub use data::{Batch, Tokens, ToyData};
