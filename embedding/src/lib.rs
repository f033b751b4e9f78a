//! # embedding: the numeric ground floor
//!
//! Token IDs become vectors here, and every other crate builds on the pieces
//! this one defines:
//!
//! - the layer contract ([`Layer`], [`Params`]): a forward pass that returns
//!   a cache, a backward pass that accumulates parameter gradients into a twin
//!   of the layer and returns the input gradient, and PyTorch-style names for
//!   every parameter;
//! - [`Linear`] (`y = x Wᵀ + b`) and [`Embedding`] (lookup, scatter-add backward);
//! - [`gemm()`]: the matrix product every layer runs on, with an AVX-512
//!   micro-kernel of its own (ndarray's elsewhere); [`simd`]: element-wise
//!   loops compiled for the widest vectors the CPU has;
//! - positional encodings: [`LearnedPositions`] and [`SinusoidalPositions`];
//! - seeded initialisation ([`init`]);
//! - [`testing`]: the finite-difference gradient checker, `assert_allclose`
//!   and the reader of PyTorch golden fixtures, shared by every crate's tests.
//!
//! ## Shapes
//! `B` batch, `T` sequence length (tokens or patches), `C` channels (the
//! vector width), `V` vocabulary size, `C_in`/`C_out` a layer's input and
//! output width, `T_max` the longest sequence a position table covers.
//! Activations are `[B, T, C]`, row-major, channels innermost (llm.c's layout);
//! weights are `[C_out, C_in]` (PyTorch's).
//!
//! ## References
//! - llm.c, `train_gpt2.c`: hand-written forward/backward pairs.
//! - PyTorch `nn.Linear`, `nn.Embedding`: the layouts and default inits.
//! - Vaswani et al. 2017, "Attention Is All You Need", §3.5: sinusoidal positions.
//!
//! ```
//! use embedding::{Embedding, Layer, LinearConfig, Params};
//! use ndarray::array;
//! use rand::SeedableRng;
//!
//! let table = Embedding::new(array![[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]]); // V = 3, C = 2
//! let (x, _) = table.forward(&array![[2, 1]]);                          // ids: [B = 1, T = 2]
//! assert_eq!(x, array![[[3.0, 4.0], [1.0, 2.0]]]);                       // [B, T, C]
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let proj = LinearConfig { c_in: 2, c_out: 5, bias: true }.init(&mut rng);
//! let (y, _) = proj.forward(&x);
//! assert_eq!(y.dim(), (1, 2, 5));
//! assert_eq!(proj.num_params(), 2 * 5 + 5);
//! ```

pub mod embedding;
pub mod gemm;
pub mod init;
pub mod layer;
pub mod linear;
pub mod position;
pub mod simd;
pub mod testing;

pub use embedding::{Embedding, EmbeddingCache, EmbeddingConfig, TokenOutOfRange};
pub use gemm::{gemm, matmul};
pub use layer::{Layer, Params, prefixed};
pub use linear::{Linear, LinearCache, LinearConfig};
pub use position::{LearnedPositions, SinusoidalPositions, sinusoidal_table};
