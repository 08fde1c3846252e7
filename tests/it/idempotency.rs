//! The same envelope posted again gets the same receipt and changes nothing, even
//! after it has expired; another body at a used seq is a conflict.

use covoit::core::protocol::sign_body;

use crate::support::{Member, TestApp, code};

#[test]
fn one_envelope_posted_five_times_has_one_effect_and_five_identical_receipts() {
    let app = TestApp::spawn();
    let alice = Member::new(1);
    let bob = Member::new(2);
    let registration = sign_body(&alice.key, &app.register_body(&alice, "Alice"));
    let (_, registered) = app.post(&registration);
    app.accept(&app.operator, &app.approve_body(&alice.id));
    app.join(&bob, "Bob");
    app.issue(&alice, "10.00");
    let size = app.size();
    let envelope = sign_body(&alice.key, &app.transfer_body(&alice, &bob.id, "2.50"));
    let bytes = serde_json::to_vec(&envelope).unwrap();
    let replies: Vec<_> = (0..5).map(|_| app.post_bytes(&bytes)).collect();
    for (status, reply) in &replies {
        assert_eq!(*status, 200, "{reply}");
        assert_eq!(reply, &replies[0].1, "every receipt is the same");
    }
    assert_eq!(app.size(), size + 1);
    assert_eq!(app.balance(&alice.id), "7.50");
    assert_eq!(app.balance(&bob.id), "2.50");
    assert_eq!(app.account(&alice.id)["next_seq"], "2");

    // Long after not_after, the same envelope still gets its receipt.
    app.clock.advance(24 * 3600 * 1000);
    let (status, late) = app.post_bytes(&bytes);
    assert_eq!((status, &late), (200, &replies[0].1));
    // Registration too: the same envelope gets the same receipt; a new one is refused.
    assert_eq!(app.post(&registration), (200, registered));
    let again = sign_body(&alice.key, &app.register_body(&alice, "Alice"));
    let (status, reply) = app.post(&again);
    assert_eq!((status, code(&reply)), (409, "account_exists"), "{reply}");

    // A different body at the same seq is a conflict, and changes nothing.
    let mut other = app.transfer_body(&alice, &bob.id, "1.00");
    other.seq = "1".into();
    let (status, reply) = app.post(&sign_body(&alice.key, &other));
    assert_eq!((status, code(&reply)), (409, "seq_reused"), "{reply}");
    assert_eq!(app.size(), size + 1);
    assert_eq!(app.balance(&alice.id), "7.50");
}

#[test]
fn concurrent_copies_of_one_envelope_commit_once() {
    let app = TestApp::spawn();
    let alice = Member::new(1);
    let bob = Member::new(2);
    app.join(&alice, "Alice");
    app.join(&bob, "Bob");
    app.issue(&alice, "10.00");
    let envelope = sign_body(&alice.key, &app.transfer_body(&alice, &bob.id, "1.00"));
    let bytes = serde_json::to_vec(&envelope).unwrap();
    let replies: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| app.post_bytes(&bytes))).collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    for (status, reply) in &replies {
        assert_eq!((*status, reply), (200, &replies[0].1));
    }
    assert_eq!(app.balance(&bob.id), "1.00");
}
