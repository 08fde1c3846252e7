//! Writes the seed corpus, `seeds/<target>/seed-*`, from the fuzz crate's samples:
//! `cargo run --example seeds` (in `fuzz/`). The seeds are committed; run this again
//! when the samples change.

use std::fs;
use std::path::Path;

use covoit::core::ids::AccountId;
use covoit::core::leaf::{self, Content, Posting};
use covoit::core::protocol;
use covoit::core::time::Timestamp;

fn write(folder: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(folder).unwrap();
    fs::write(folder.join(format!("seed-{name}")), bytes).unwrap();
}

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let _ = fs::remove_dir_all(&seeds);
    let samples = covoit_fuzz::sample_bodies();
    for ((_, wire), envelope) in samples.iter().zip(covoit_fuzz::signed_samples()) {
        let json = covoit_fuzz::envelope_bytes(&envelope);
        let command = protocol::open_envelope(&json).expect("every sample is a valid envelope");
        let name = wire.command.kind().replace('.', "-");
        let name = format!("{name}-{}", wire.seq);
        write(&seeds.join("envelope"), &format!("{name}.json"), &json);
        let mut signature = vec![7u8];
        signature.extend_from_slice(&json);
        write(&seeds.join("signature"), &name, &signature);
        write(&seeds.join("body"), &format!("{name}.json"), command.body_bytes());
        write(&seeds.join("canonical"), &format!("{name}.json"), command.body_bytes());
        let member = AccountId::parse("0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b").unwrap();
        let postings = [
            Posting { account: AccountId::reserve(), amount_minor: -2000 },
            Posting { account: member, amount_minor: 2000 },
        ];
        let at = Timestamp::parse("2026-11-25T08:00:00.123Z").unwrap();
        let bytes = leaf::encode(7, at, Content::Command(&envelope), &postings);
        write(&seeds.join("leaf"), &format!("{name}.json"), &bytes);
    }
    // RFC 8785's published examples, in and out of canonical form.
    let rfc8785 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/rfc8785");
    for folder in ["input", "output"] {
        for entry in fs::read_dir(rfc8785.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("rfc8785-{folder}-{}", path.file_name().unwrap().to_string_lossy());
            write(&seeds.join("canonical"), &name, &fs::read(&path).unwrap());
        }
    }
    println!("wrote {}", seeds.display());
}
