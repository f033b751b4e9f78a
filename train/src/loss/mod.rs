//! The two losses of a CoCa-style model: contrastive (do this image and
//! this caption belong together?) and captioning (what is the next word?).

pub mod caption;
pub mod contrastive;

pub use caption::{CaptionLoss, caption_loss};
pub use contrastive::{ContrastiveLoss, contrastive_loss};
