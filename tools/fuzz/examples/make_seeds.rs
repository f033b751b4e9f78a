//! Writes the seed corpus of every target into `corpus/<target>/`: one or
//! a few valid files of each kind, as the program writes them, from which
//! the fuzzer mutates. Deterministic; run it from `tools/fuzz` with
//! `cargo run --release --example make_seeds` after a file format changes.

use std::fs;
use std::path::Path;

use embedding::Params;
use model::ModelConfig;
use rand::SeedableRng;

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let micro = ModelConfig::micro(40).init(&mut rng)?;
    let tokenizer = train::ToyData {
        seed: 0,
        two_object: 0.0,
        world: train::data::World::SMALL,
    }
    .train_tokenizer()?;

    fn weights(
        metadata: &[(&str, &str)],
        tensors: &[(String, ndarray::ArrayViewD<'_, f32>)],
    ) -> Vec<u8> {
        let metadata = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        model::safetensors::to_bytes(tensors, &metadata)
    }
    let model_file = weights(&[("format_version", "1")], &micro.params());
    let opt = train::AdamWState::new(train::AdamW::default(), &micro);
    let opt_file = weights(&[("step", "2"), ("adamw_steps", "2")], &opt.params());

    let mut cnn = ModelConfig::micro(40);
    cnn.image = ModelConfig::micro_cnn();
    let history = train::run::History {
        steps: (0..3)
            .map(|step| train::run::StepRecord {
                step,
                loss: 5.0 - step as f32,
                contrastive: 2.0,
                caption: 1.5,
                grad_norm: 0.7,
                lr: 1e-3,
                logit_scale: 2.65,
            })
            .collect(),
        evals: Vec::new(),
        train_seconds: 1.5,
    };
    let own = train::commands::own::OwnRun {
        data: "/data/my-data".into(),
        train_items: 18,
        validation_items: 2,
        blank_lines: 0,
        eval: None,
    };
    let picture = image::RgbImage::from_fn(12, 9, |x, y| {
        image::Rgb([(x * 20) as u8, (y * 25) as u8, 90])
    });
    let encode = |format: image::ImageFormat, picture: &image::DynamicImage| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        picture
            .write_to(&mut bytes, format)
            .expect("in-memory encoding");
        bytes.into_inner()
    };
    let rgb = image::DynamicImage::ImageRgb8(picture);

    let seeds: Vec<(&str, Seeds)> = vec![
        ("safetensors", vec![("micro.safetensors", model_file.clone()), ("optimizer.safetensors", opt_file.clone())]),
        ("weights", vec![("micro.safetensors", model_file)]),
        (
            "model_config",
            vec![
                ("micro.txt", model::config_to_text(&ModelConfig::micro(40)).into_bytes()),
                ("micro-cnn.txt", model::config_to_text(&cnn).into_bytes()),
                ("tiny.txt", model::config_to_text(&ModelConfig::tiny(300)).into_bytes()),
            ],
        ),
        (
            "vlm_config",
            vec![
                (
                    "vlm.txt",
                    model::vlm_checkpoint::vlm_config_to_text(&model::vlm::VlmConfig::micro(60, 40)).into_bytes(),
                ),
                (
                    "lm.txt",
                    model::vlm_checkpoint::lm_config_to_text(
                        &model::lm::LmConfig::micro(60, 40),
                        &model::vlm::VlmConfig::last_five(60),
                    )
                    .into_bytes(),
                ),
            ],
        ),
        ("tokenizer_file", vec![("toy.txt", tokenizer.to_text().into_bytes())]),
        ("tiktoken", vec![("toy.tiktoken", tokenizer.to_tiktoken().into_bytes())]),
        (
            "run_json",
            vec![
                ("default.json", serde_json::to_vec_pretty(&train::RunConfig::default())?),
                ("own-data.json", serde_json::to_vec_pretty(&own)?),
            ],
        ),
        ("history_json", vec![("history.json", serde_json::to_vec_pretty(&history)?)]),
        ("optimizer_state", vec![("optimizer.safetensors", opt_file)]),
        (
            "captions_tsv",
            vec![
                ("captions.tsv", b"00000.png\ta big red circle in the top left\n\n00001.png\ta small blue square\nsub/c.jpg\ta cat\n".to_vec()),
                ("bom.tsv", "\u{feff}a.png\tred\n   \nb.png\tblue\n".as_bytes().to_vec()),
            ],
        ),
        (
            "questions_tsv",
            vec![(
                "questions.tsv",
                b"scene.png\twhat colour is the circle?\tred\tcolour\nscene.png\thow many squares are there?\t2\n".to_vec(),
            )],
        ),
        (
            "image",
            vec![
                ("rgb.png", encode(image::ImageFormat::Png, &rgb)),
                ("grey.png", encode(image::ImageFormat::Png, &image::DynamicImage::ImageLuma8(rgb.to_luma8()))),
                ("rgba.png", encode(image::ImageFormat::Png, &image::DynamicImage::ImageRgba8(rgb.to_rgba8()))),
                ("rgb.jpg", encode(image::ImageFormat::Jpeg, &rgb)),
            ],
        ),
    ];
    for (target, files) in seeds {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        for (name, bytes) in files {
            fs::write(dir.join(name), bytes)?;
        }
    }
    println!("wrote {}", root.display());
    Ok(())
}
