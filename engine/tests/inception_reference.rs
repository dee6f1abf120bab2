//! The InceptionV3 port against a PyTorch implementation of the same network with the same
//! seeded weights (`scripts/inception_reference.py`, run here into a folder under the target
//! directory and reused while the script is unchanged): all three weight-file formats load
//! to identical tensors, features, logits and FID agree, the parameter count is the
//! published one, and a missing file says where to get it.

mod inception_fixture;

use std::collections::HashMap;
use std::path::Path;

use inception_fixture::reference_dir;

use difflow_engine::metrics::fid::{frechet_distance, FeatureStats};
use difflow_engine::metrics::inception::{self, InceptionV3, Precision};
use tch::{Device, Tensor};

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

fn max_errors(ours: &Tensor, reference: &Tensor) -> (f64, f64) {
    assert_eq!(ours.size(), reference.size());
    let diff = (ours - reference).abs().max().double_value(&[]);
    let scale = reference.abs().max().double_value(&[]);
    (diff, diff / scale)
}

#[test]
fn inception_port_agrees_with_pytorch() {
    tch::set_num_threads(2);
    let dir = reference_dir();

    // The three file formats hold the same tensors, under the published names.
    let zip = inception::read_weights(&dir.join("inception.pth")).unwrap();
    let legacy: HashMap<String, Tensor> =
        inception::read_weights(&dir.join("inception_legacy.pth")).unwrap().into_iter().collect();
    let safetensors: HashMap<String, Tensor> =
        inception::read_weights(&dir.join("inception.safetensors")).unwrap().into_iter().collect();
    let expected = inception::expected_state_dict();
    assert_eq!(zip.len(), expected.len());
    let mut parameters = 0;
    for (name, t) in &zip {
        assert_eq!(&t.size(), &expected[name], "{name}");
        assert!(t.equal(&legacy[name]), "{name} differs in the legacy .pth");
        assert!(t.equal(&safetensors[name]), "{name} differs in the .safetensors");
        if !name.contains("running_") {
            parameters += t.numel() as i64;
        }
    }
    // The legacy file also carries BN's num_batches_tracked counters, which are ignored.
    assert!(legacy.keys().any(|k| k.ends_with("num_batches_tracked")));
    assert_eq!(parameters, 23_850_960);
    assert_eq!(inception::PARAMETER_COUNT, 23_850_960);

    let net = InceptionV3::load(&dir.join("inception.pth"), Device::Cpu, Precision::F32).unwrap();
    let reference = tensors(&dir.join("reference.safetensors"));
    let out_a = net.extract(&reference["images_a"], 3, |_| {}).unwrap();
    let out_b = net.extract(&reference["images_b"], 6, |_| {}).unwrap();
    let (fa_abs, fa_rel) = max_errors(&out_a.pool3, &reference["features_a"]);
    let (fb_abs, fb_rel) = max_errors(&out_b.pool3, &reference["features_b"]);
    let (la_abs, la_rel) = max_errors(&out_a.logits, &reference["logits_a"]);
    let (lb_abs, lb_rel) = max_errors(&out_b.logits, &reference["logits_b"]);
    println!("pool3 RGB:  max abs err {fa_abs:.3e}, relative to max |feature| {fa_rel:.3e}");
    println!("pool3 gray: max abs err {fb_abs:.3e}, relative to max |feature| {fb_rel:.3e}");
    println!("logits RGB: max abs err {la_abs:.3e} ({la_rel:.3e}); gray: {lb_abs:.3e} ({lb_rel:.3e})");
    for rel in [fa_rel, fb_rel, la_rel, lb_rel] {
        assert!(rel < 5e-4, "the port disagrees with PyTorch: relative error {rel:e}");
    }

    let fid_reference = reference["fid"].double_value(&[0]);
    let stats = |t: &Tensor| FeatureStats::of(t).unwrap();
    let fid_of_reference_features =
        frechet_distance(&stats(&reference["features_a"]), &stats(&reference["features_b"])).unwrap();
    let fid_ours = frechet_distance(&stats(&out_a.pool3), &stats(&out_b.pool3)).unwrap();
    println!("FID: PyTorch {fid_reference:.6}, ours on PyTorch features {fid_of_reference_features:.6}, ours end to end {fid_ours:.6}");
    assert!((fid_of_reference_features - fid_reference).abs() < 1e-6 * fid_reference);
    assert!((fid_ours - fid_reference).abs() < 1e-4 * fid_reference);
    assert!(fid_reference > 1.0, "the two image sets should differ");
}

#[test]
fn the_safetensors_file_gives_the_same_network() {
    tch::set_num_threads(2);
    let dir = reference_dir();
    let reference = tensors(&dir.join("reference.safetensors"));
    let net = InceptionV3::load(&dir.join("inception.safetensors"), Device::Cpu, Precision::F32).unwrap();
    let image = reference["images_a"].narrow(0, 0, 1);
    let out = net.extract(&image, 1, |_| {}).unwrap();
    let (_, rel) = max_errors(&out.pool3, &reference["features_a"].narrow(0, 0, 1));
    assert!(rel < 5e-4, "relative error {rel:e}");

    // bf16 (meant for CUDA; libtorch runs it on the CPU too): close, not exact.
    let half = InceptionV3::load(&dir.join("inception.safetensors"), Device::Cpu, Precision::Bf16).unwrap();
    let out = half.extract(&image, 1, |_| {}).unwrap();
    let exact = reference["features_a"].narrow(0, 0, 1);
    let (_, rel) = max_errors(&out.pool3, &exact);
    let cosine = (&out.pool3 * &exact).sum(tch::Kind::Double).double_value(&[])
        / (out.pool3.norm().double_value(&[]) * exact.norm().double_value(&[]));
    println!("bf16 pool3: max error relative to max |feature| {rel:.3e}, cosine similarity {cosine:.5}");
    assert!(cosine > 0.98, "bf16 features point elsewhere: cosine {cosine}");
    assert_eq!(out.pool3.kind(), tch::Kind::Float);
}

#[test]
fn a_wrong_layout_is_refused_with_the_entry_named() {
    let dir = reference_dir();
    let mut weights = inception::read_weights(&dir.join("inception.safetensors")).unwrap();
    let (name, t) = weights.iter_mut().find(|(n, _)| n == "Mixed_6b.branch7x7_2.conv.weight").unwrap();
    *t = t.narrow(3, 0, 5);
    let name = name.clone();
    let err = InceptionV3::from_state_dict(weights, Device::Cpu, Precision::F32).err().unwrap().to_string();
    assert!(err.contains(&name) && err.contains("[128, 128, 1, 5]"), "{err}");
}

#[test]
fn a_missing_weights_file_says_where_to_get_it() {
    let path = Path::new("/nonexistent/weights/pt_inception.pth");
    let err = InceptionV3::load(path, Device::Cpu, Precision::F32).err().unwrap().to_string();
    assert!(err.contains("pt_inception-2015-12-05-6726825d.pth"), "{err}");
    assert!(err.contains("https://github.com/mseitzer/pytorch-fid/releases"), "{err}");
    assert!(err.contains("/nonexistent/weights/pt_inception.pth"), "{err}");
    assert!(err.contains("difflow.toml") && err.contains("inception_weights"), "{err}");
}
