//! Property tests: laws that hold for every input, checked on random ones.

use attention::{
    BlockConfig, Mask, MultiHeadAttentionConfig, Tile, attention_forward, softmax,
    tiled_attention_forward,
};
use embedding::init;
use embedding::testing::assert_allclose;
use ndarray::{Array1, Array2, Array3, Array4, Axis, s};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn softmax_rows_sum_to_one_and_ignore_a_shift(
        rows in 1usize..5,
        cols in 1usize..9,
        seed in any::<u64>(),
        shift in -50.0f32..50.0,
        spread in 0.1f32..20.0,
    ) {
        let x: Array2<f32> = init::normal((rows, cols), spread, &mut StdRng::seed_from_u64(seed));
        let p = softmax(&x);
        for row in p.rows() {
            prop_assert!((row.sum() - 1.0).abs() < 1e-5, "row sums to {}", row.sum());
            prop_assert!(row.iter().all(|&v| (0.0..=1.0).contains(&v)));
        }
        let shifted = softmax(&(&x + shift));
        assert_allclose("softmax(x + c)", &shifted, &p, 1e-4, 1e-6);
    }

    #[test]
    fn causal_output_never_sees_the_future(
        seq in 2usize..7,
        cut in 0usize..6,
        seed in any::<u64>(),
    ) {
        let cut = cut % (seq - 1) + 1; // change tokens cut.. ; outputs ..cut must not move
        let mut rng = StdRng::seed_from_u64(seed);
        let block = BlockConfig { width: 8, n_head: 2, mlp_hidden: 16 }.init(&mut rng);
        let x: Array3<f32> = init::normal((2, seq, 8), 1.0, &mut rng);
        let mut changed = x.clone();
        let noise: Array3<f32> = init::normal((2, seq - cut, 8), 3.0, &mut rng);
        changed.slice_mut(s![.., cut.., ..]).assign(&noise);
        let (a, _) = block.forward_masked(&x, &Mask::Causal);
        let (b, _) = block.forward_masked(&changed, &Mask::Causal);
        // exactly equal: the masked scores never enter the sums at all
        prop_assert_eq!(a.slice(s![.., ..cut, ..]), b.slice(s![.., ..cut, ..]));
    }

    #[test]
    fn permuting_keys_and_values_together_changes_nothing(
        t_q in 1usize..5,
        t_kv in 1usize..8,
        seed in any::<u64>(),
        rotate in 0usize..8,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let q: Array4<f32> = init::normal((2, 2, t_q, 4), 1.0, &mut rng);
        let k: Array4<f32> = init::normal((2, 2, t_kv, 4), 1.0, &mut rng);
        let v: Array4<f32> = init::normal((2, 2, t_kv, 4), 1.0, &mut rng);
        // a permutation of the keys: reverse, then rotate
        let order: Vec<usize> = (0..t_kv).rev().cycle().skip(rotate % t_kv).take(t_kv).collect();
        let (k2, v2) = (k.select(Axis(2), &order), v.select(Axis(2), &order));
        let (want, _) = attention_forward(&q, &k, &v, &Mask::None);
        let (got, _) = attention_forward(&q, &k2, &v2, &Mask::None);
        assert_allclose("permuted", &got, &want, 1e-5, 1e-6);
    }

    #[test]
    fn kv_cache_decoding_equals_the_full_forward(
        seq in 1usize..7,
        chunk in 1usize..4,
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let block = BlockConfig { width: 8, n_head: 2, mlp_hidden: 16 }.init(&mut rng);
        let x: Array3<f32> = init::normal((2, seq, 8), 1.0, &mut rng);
        let (want, _) = block.forward_masked(&x, &Mask::Causal);
        let mut cache = block.kv_cache(2, seq);
        let mut start = 0;
        while start < seq {
            let end = (start + chunk).min(seq); // feed `chunk` tokens per step
            let got = block.forward_incremental(&x.slice(s![.., start..end, ..]), &mut cache);
            assert_allclose("step", &got, &want.slice(s![.., start..end, ..]), 1e-4, 1e-5);
            start = end;
        }
    }

    #[test]
    fn tiled_equals_plain(
        t_q in 1usize..12,
        t_kv in 1usize..12,
        tile_q in 1usize..6,
        tile_kv in 1usize..6,
        lengths in proptest::collection::vec(0usize..12, 2),
        causal in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let q: Array4<f32> = init::normal((2, 2, t_q, 4), 2.0, &mut rng);
        let k: Array4<f32> = init::normal((2, 2, t_kv, 4), 2.0, &mut rng);
        let v: Array4<f32> = init::normal((2, 2, t_kv, 4), 1.0, &mut rng);
        let mask = if causal { Mask::CausalKeyPadding(lengths) } else { Mask::KeyPadding(lengths) };
        let (want, _) = attention_forward(&q, &k, &v, &mask);
        let got = tiled_attention_forward(&q, &k, &v, &mask, Tile { q: tile_q, kv: tile_kv });
        assert_allclose("tiled", &got, &want, 1e-5, 1e-6);
    }

    #[test]
    fn attention_weights_rows_sum_to_one_or_zero(
        seq in 1usize..6,
        len in 0usize..6,
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mha = MultiHeadAttentionConfig { width: 4, n_head: 2 }.init(&mut rng);
        let x: Array3<f32> = init::normal((1, seq, 4), 1.0, &mut rng);
        let (_, cache) = mha.forward_masked(&x, &Mask::CausalKeyPadding(vec![len]));
        let sums: Array1<f32> = cache.weights().sum_axis(Axis(3)).iter().copied().collect();
        let want = if len == 0 { 0.0 } else { 1.0 };
        prop_assert!(sums.iter().all(|s| (s - want).abs() < 1e-5), "{sums}");
    }
}
