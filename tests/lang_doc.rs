//! `docs/language.md` is generated from the schema; this test fails when it is out of date
//! (regenerate with `DIFFLOW_BLESS=1 cargo test --release -p difflow --test lang_doc`).

use std::path::Path;

#[test]
fn language_md_matches_the_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/language.md");
    let expected = difflow::doc::language_md();
    if std::env::var_os("DIFFLOW_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/language.md is out of date: run `DIFFLOW_BLESS=1 cargo test --release -p difflow --test lang_doc`"
    );
}

#[test]
fn doc_covers_every_writable_kind_variant_and_key() {
    let full = difflow::doc::render(None).unwrap();
    for k in difflow::schema::kinds() {
        assert!(full.contains(&format!("## `{}`", k.name)), "{}", k.name);
        for v in &k.variants {
            for key in &v.keys {
                assert!(full.contains(&format!("| `{}` |", key.name)), "{}.{}.{}", k.name, v.name, key.name);
            }
        }
    }
    let one = difflow::doc::render(Some("sampler")).unwrap();
    assert!(one.contains("`sampler = ddim`") && one.contains("| `eta` | float | `0` | 0 ≤ eta ≤ 1 |"), "{one}");
    let err = difflow::doc::render(Some("samplr")).unwrap_err();
    assert!(err.contains("did you mean `sampler`?"), "{err}");
}
