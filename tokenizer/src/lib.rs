pub mod bpe;
pub mod error;
pub mod hash;
pub mod pretokenize;
pub mod train;
pub mod train_fast;

pub use bpe::{BYTE_TOKENS, Bpe, count_pairs, merge};
pub use error::TokenizerError;
pub use pretokenize::{Pieces, Split, split};
pub use train::{Merge, train_reference};
pub use train_fast::{WordCounts, train_fast};
