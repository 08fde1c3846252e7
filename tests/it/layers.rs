//! The core stays pure: no file under `src/core` names the outer layers' crates.

#[test]
fn the_core_knows_nothing_of_warp_rusqlite_or_tokio() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut checked = 0;
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for word in ["warp", "rusqlite", "tokio", "std::fs", "std::net", "SystemTime"] {
            assert!(!text.contains(word), "{} names {word}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 8, "checked {checked} files");
}
