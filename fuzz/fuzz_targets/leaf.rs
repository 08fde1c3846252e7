//! A leaf's bytes, as `covoit audit` reads them from a database or an export file
//! that anyone may have written: `leaf::decode`. No panic; a decoded leaf is canonical
//! JSON, and a decoded command leaf whose postings balance encodes back to the same bytes.
#![no_main]

use covoit::core::canonical;
use covoit::core::leaf::{self, Content, OwnedContent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = leaf::decode(data) else { return };
    assert!(canonical::check_canonical(data).is_ok(), "decode accepted a leaf that is not canonical");
    let sum: i128 = decoded.postings.iter().map(|posting| i128::from(posting.amount_minor)).sum();
    let balanced = sum == 0 && decoded.postings.iter().all(|posting| posting.amount_minor != 0);
    if balanced {
        let content = match &decoded.content {
            OwnedContent::Command(envelope) => Content::Command(envelope),
            OwnedContent::Event(event) => Content::Event(event),
        };
        let again = leaf::encode(decoded.index, decoded.accepted_at, content, &decoded.postings);
        assert_eq!(again, data, "a decoded leaf encodes back to its bytes");
    }
});
