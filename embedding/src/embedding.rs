//! `Embedding`: a token ID picks a row of a matrix.
//!
//! - forward: `out[b, t, :] = W[ids[b, t], :]`, with `W: [V, C]`;
//! - backward: `dW[ids[b, t], :] += dout[b, t, :]` (a scatter-add: a row used
//!   twice gets both gradients, rows never used get none).
//!
//! The lookup is the same as multiplying a one-hot vector by `W`
//! (`one_hot(id) · W = W[id]`), only without the `V`-long vector of zeros;
//! the tests check both directions of that identity.
//! Reference: <https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html>

use std::fmt;

use ndarray::{Array2, Array3, ArrayRef2, ArrayRef3, ArrayViewD, ArrayViewMutD, Axis};
use rand::Rng;

use crate::init;
use crate::layer::Params;

// ANCHOR: embedding_struct
/// A lookup table from token IDs to vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// `[V, C]`: row `i` is the vector of token `i`.
    pub weight: Array2<f32>,
}

/// What `Embedding::backward` needs: which rows the forward pass read.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    ids: Array2<u32>, // [B, T]
}
// ANCHOR_END: embedding_struct

/// The sizes of a fresh [`Embedding`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingConfig {
    /// Vocabulary size `V`.
    pub vocab: usize,
    /// Vector size `C`.
    pub dim: usize,
    /// Standard deviation of the initial weights. PyTorch's `nn.Embedding`
    /// uses 1.0; GPT-2 uses 0.02 so that the first logits are small.
    pub std: f32,
}

impl EmbeddingConfig {
    /// `W ~ N(0, std²)`.
    pub fn init(&self, rng: &mut impl Rng) -> Embedding {
        Embedding::new(init::normal((self.vocab, self.dim), self.std, rng))
    }
}

/// A token ID outside the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOutOfRange {
    /// The offending ID.
    pub id: u32,
    /// Where it stood, `[b, t]`.
    pub position: [usize; 2],
    /// The vocabulary size `V`.
    pub vocab: usize,
}

impl fmt::Display for TokenOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token id {} at {:?} is out of range for a vocabulary of {}",
            self.id, self.position, self.vocab
        )
    }
}

impl std::error::Error for TokenOutOfRange {}

impl Embedding {
    /// A table from a given `weight: [V, C]`.
    pub fn new(weight: Array2<f32>) -> Self {
        Embedding { weight }
    }

    /// Vocabulary size `V`.
    pub fn vocab(&self) -> usize {
        self.weight.nrows()
    }

    /// Vector size `C`.
    pub fn dim(&self) -> usize {
        self.weight.ncols()
    }

    /// Checks IDs that come from outside the program before a forward pass.
    ///
    /// # Errors
    /// The first ID that is not below `V`, with its position.
    pub fn check_ids(&self, ids: &ArrayRef2<u32>) -> Result<(), TokenOutOfRange> {
        match ids
            .indexed_iter()
            .find(|&(_, &id)| id as usize >= self.vocab())
        {
            Some(((b, t), &id)) => Err(TokenOutOfRange {
                id,
                position: [b, t],
                vocab: self.vocab(),
            }),
            None => Ok(()),
        }
    }

    // ANCHOR: forward
    /// Looks up every ID.
    ///
    /// # Shapes
    /// - `ids: [B, T]` → `out: [B, T, C]`
    ///
    /// # Panics
    /// If an ID is not below `V` (use [`Embedding::check_ids`] on untrusted IDs).
    #[track_caller]
    pub fn forward(&self, ids: &ArrayRef2<u32>) -> (Array3<f32>, EmbeddingCache) {
        if let Err(e) = self.check_ids(ids) {
            panic!(
                "embedding: {e} (ids are {:?}, weight is {:?})",
                ids.dim(),
                self.weight.dim()
            );
        }
        let (batch, seq) = ids.dim();
        let mut out = Array3::zeros((batch, seq, self.dim()));
        for ((b, t), &id) in ids.indexed_iter() {
            out.slice_mut(ndarray::s![b, t, ..])
                .assign(&self.weight.row(id as usize));
        }
        (
            out,
            EmbeddingCache {
                ids: ids.to_owned(),
            },
        )
    }
    // ANCHOR_END: forward

    // ANCHOR: backward
    /// Scatter-adds `dout` into the rows that were read. There is no input
    /// gradient: IDs are integers, nothing upstream to differentiate.
    ///
    /// # Shapes
    /// - `dout: [B, T, C]`
    #[track_caller]
    pub fn backward(&self, dout: &ArrayRef3<f32>, cache: &EmbeddingCache, grads: &mut Embedding) {
        let (batch, seq, dim) = dout.dim();
        assert_eq!(
            (batch, seq, dim),
            (cache.ids.nrows(), cache.ids.ncols(), self.dim()),
            "embedding backward: dout is {:?}, ids are {:?}, weight is {:?}",
            dout.dim(),
            cache.ids.dim(),
            self.weight.dim()
        );
        // in the forward pass this was:
        //   out[b, t, :] = W[id, :]
        // so now we have (+=, because the same id may appear many times):
        for ((b, t), &id) in cache.ids.indexed_iter() {
            let mut drow = grads.weight.row_mut(id as usize); // [C]
            drow += &dout.index_axis(Axis(0), b).row(t);
        }
    }
    // ANCHOR_END: backward
}

impl Params for Embedding {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        vec![("weight".to_string(), self.weight.view().into_dyn())]
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        vec![("weight".to_string(), self.weight.view_mut().into_dyn())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GradCheck, assert_allclose, fakeloss};
    use ndarray::{Array1, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn table() -> Embedding {
        EmbeddingConfig {
            vocab: 6,
            dim: 4,
            std: 1.0,
        }
        .init(&mut StdRng::seed_from_u64(0))
    }

    #[test]
    fn lookup_picks_rows() {
        let emb = Embedding::new(array![[0., 0.], [1., 2.], [3., 4.]]);
        let (out, _) = emb.forward(&array![[2, 1, 2]]);
        assert_eq!(out, array![[[3., 4.], [1., 2.], [3., 4.]]]);
    }

    // ANCHOR: one_hot_test
    /// The chapter's key idea: a lookup is a one-hot vector times the matrix,
    /// and the scatter-add backward is that product's gradient `one_hotᵀ · dout`.
    #[test]
    fn lookup_equals_one_hot_matmul() {
        let emb = table();
        let ids = array![[3u32, 0, 3], [5, 1, 2]]; // [B=2, T=3], id 3 used twice
        let one_hot = Array2::from_shape_fn((6, 6), |(i, j)| (i == j) as u8 as f32); // row i = one_hot(i)
        let rows: Array2<f32> = one_hot.select(
            Axis(0),
            &ids.iter().map(|&i| i as usize).collect::<Vec<_>>(),
        ); // [B*T, V]

        // forward: out = one_hot(ids) · W
        let (out, cache) = emb.forward(&ids);
        let via_matmul = rows
            .dot(&emb.weight)
            .into_shape_with_order((2, 3, 4))
            .unwrap();
        assert_allclose("out", &out, &via_matmul, 0.0, 0.0);

        // backward: dW = one_hot(ids)ᵀ · dout
        let dout: Array3<f32> = init::normal((2, 3, 4), 1.0, &mut StdRng::seed_from_u64(1));
        let mut grads = emb.zeros_like();
        emb.backward(&dout, &cache, &mut grads);
        let dout_rows = dout.to_shape((6, 4)).unwrap(); // [B*T, C]
        let via_matmul = rows.t().dot(&dout_rows);
        assert_allclose("dW", &grads.weight, &via_matmul, 1e-6, 1e-6);
    }
    // ANCHOR_END: one_hot_test

    #[test]
    fn repeated_ids_accumulate_and_unused_rows_stay_zero() {
        let emb = table();
        let ids = array![[4u32, 4, 4]];
        let (_, cache) = emb.forward(&ids);
        let dout = Array3::ones((1, 3, 4));
        let mut grads = emb.zeros_like();
        emb.backward(&dout, &cache, &mut grads);
        assert_eq!(grads.weight.row(4), Array1::from_elem(4, 3.0));
        assert_eq!(grads.weight.sum(), 12.0);
    }

    #[test]
    fn embedding_gradcheck() {
        let emb = table();
        let ids = array![[0u32, 2, 2], [5, 1, 0]];
        let (out, cache) = emb.forward(&ids);
        let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut StdRng::seed_from_u64(2));
        let mut grads = emb.zeros_like();
        emb.backward(&dout, &cache, &mut grads);

        let mut state = emb.clone();
        GradCheck::default()
            .run(&mut state, &grads, |e| fakeloss(&e.forward(&ids).0, &dout))
            .into_result()
            .unwrap();
    }

    #[test]
    fn out_of_range_is_an_error_for_untrusted_ids() {
        let emb = table();
        let err = emb.check_ids(&array![[1u32, 6]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token id 6 at [0, 1] is out of range for a vocabulary of 6"
        );
    }

    #[test]
    #[should_panic(
        expected = "embedding: token id 9 at [0, 0] is out of range for a vocabulary of 6 (ids are (1, 1), weight is (6, 4))"
    )]
    fn out_of_range_panics_in_forward_with_shapes() {
        let _ = table().forward(&array![[9u32]]);
    }
}
