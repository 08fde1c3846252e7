//! Many clients paying at once: the money stays exact.
//!
//! A property test: for random workloads, 32 client threads pay at random among 10
//! accounts (some with credit lines, some payments too large to pass). Afterwards
//! Σ balances = 0, no floor is broken, every accepted payment is in the balances and
//! the log, and no refused one is.

use std::collections::BTreeSet;
use std::sync::Mutex;

use covoit::core::protocol::{BodyWire, CommandWire, sign_body};
use proptest::prelude::*;

use crate::support::{Member, TestApp, code};

const CLIENTS: usize = 32;
const ACCOUNTS: usize = 10;
const PAYMENTS_PER_CLIENT: usize = 6;

#[derive(Debug, Clone)]
struct Payment {
    payer: usize,
    payee: usize,
    amount_minor: i64,
}

fn payments() -> impl Strategy<Value = Vec<Payment>> {
    let payment = (0..ACCOUNTS, 0..ACCOUNTS, 1i64..=1500).prop_map(|(payer, payee, amount_minor)| Payment {
        payer,
        payee,
        amount_minor,
    });
    proptest::collection::vec(payment, CLIENTS * PAYMENTS_PER_CLIENT)
}

/// What one client saw for one payment.
enum Seen {
    Accepted { index: u64, payment: Payment },
    Refused,
}

fn minor(amount: &str) -> i64 {
    let (whole, cents) = amount.split_once('.').unwrap();
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    whole.parse::<i64>().unwrap() * 100 + sign * cents.parse::<i64>().unwrap()
}

fn amount(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

fn run_workload(workload: Vec<Payment>) {
    let app = TestApp::spawn();
    let members: Vec<Member> = (0..ACCOUNTS).map(|seat| Member::new(100 + seat as u64)).collect();
    for (seat, member) in members.iter().enumerate() {
        app.join(member, &format!("Member {seat}"));
        if seat % 3 == 0 {
            app.accept(&app.operator, &app.credit_body(&member.id, "-10.00"));
        }
        if seat % 2 == 0 {
            app.issue(member, &amount(2000 + 100 * seat as i64));
        }
    }
    let start: Vec<i64> = members.iter().map(|member| minor(&app.balance(&member.id))).collect();
    let floors: Vec<i64> =
        members.iter().map(|member| minor(app.account(&member.id)["floor"].as_str().unwrap())).collect();
    let size_before = app.size();
    // One lock per payer: a signer has one command in flight at a time, so that its
    // seqs reach the writer in order (as one person's phone would send them).
    let next_seqs: Vec<Mutex<u64>> =
        members.iter().map(|member| Mutex::new(app.next_seq(&member.id).parse().unwrap())).collect();

    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let handles: Vec<_> = workload
            .chunks(PAYMENTS_PER_CLIENT)
            .map(|share| {
                let (app, members, next_seqs) = (&app, &members, &next_seqs);
                scope.spawn(move || {
                    share.iter().map(|payment| pay(app, members, next_seqs, payment)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|handle| handle.join().unwrap()).collect()
    });

    let mut expected = start.clone();
    let mut indexes = BTreeSet::new();
    for seen in &seen {
        if let Seen::Accepted { index, payment } = seen {
            expected[payment.payer] -= payment.amount_minor;
            expected[payment.payee] += payment.amount_minor;
            assert!(indexes.insert(*index), "leaf {index} was given twice");
        }
    }
    let accepted = indexes.len() as u64;
    assert!(accepted > 0, "some payments went through");
    assert_eq!(app.size(), size_before + accepted, "the log holds exactly the accepted payments");
    let expected_indexes: BTreeSet<u64> = (size_before..size_before + accepted).collect();
    assert_eq!(indexes, expected_indexes, "the accepted payments are the leaves after the set-up, one each");
    let mut sum = minor(&app.balance("reserve"));
    for (seat, member) in members.iter().enumerate() {
        let account = app.account(&member.id);
        let balance = minor(account["balance"].as_str().unwrap());
        assert_eq!(balance, expected[seat], "member {seat}: every 2xx is reflected, no refusal is");
        assert!(balance >= floors[seat], "member {seat} is at {balance}, below its floor {}", floors[seat]);
        sum += balance;
    }
    assert_eq!(sum, 0, "the balances sum to zero");
    // Every accepted payment is in the payer's history, at the index its receipt gave.
    for (seat, member) in members.iter().enumerate() {
        let (_, page) = app.get(&format!("/v1/accounts/{}/postings?limit=200", member.id));
        let listed: BTreeSet<u64> =
            page["postings"].as_array().unwrap().iter().map(|line| line["index"].as_u64().unwrap()).collect();
        for seen in &seen {
            if let Seen::Accepted { index, payment } = seen {
                if payment.payer == seat || payment.payee == seat {
                    assert!(listed.contains(index), "leaf {index} is in member {seat}'s history");
                }
            }
        }
    }
}

fn pay(app: &TestApp, members: &[Member], next_seqs: &[Mutex<u64>], payment: &Payment) -> Seen {
    let payer = &members[payment.payer];
    let mut next_seq = next_seqs[payment.payer].lock().unwrap();
    let body = BodyWire {
        ledger: app.ledger.clone(),
        account: payer.id.clone(),
        seq: next_seq.to_string(),
        not_after: app.not_after(),
        by: None,
        command: CommandWire::Transfer {
            to: members[payment.payee].id.clone(),
            amount: amount(payment.amount_minor),
            memo: None,
        },
    };
    let (status, reply) = app.post(&sign_body(&payer.key, &body));
    match (status, payment.payer == payment.payee) {
        (200, false) => {
            *next_seq += 1;
            Seen::Accepted { index: reply["index"].as_u64().unwrap(), payment: payment.clone() }
        }
        (400, true) => {
            assert_eq!(code(&reply), "self_transfer");
            Seen::Refused
        }
        (422, false) => {
            assert_eq!(code(&reply), "insufficient_funds");
            Seen::Refused
        }
        other => panic!("unexpected reply {other:?}: {reply}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn thirty_two_clients_paying_at_random_keep_the_money_exact(workload in payments()) {
        run_workload(workload);
    }
}
