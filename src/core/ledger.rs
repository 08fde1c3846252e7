//! The ledger's state machine: one pure function from (state, leaf) to a new state.
//!
//! [`apply`] decides whether a verified command may be applied to the state and, if
//! so, applies it and returns the postings of its leaf; [`apply_event`] does the same
//! for a server event. Neither reads a clock (the leaf's `accepted_at` is an
//! argument), touches a disk or draws a random number, so the server deciding and
//! the auditor replaying get the same answer. On a refusal the state is untouched:
//! [`decide`] only reads, [`commit`] only writes. Ride commands are decided in
//! `core::rides`.
//!
//! Invariants kept at every step, and asserted after each one:
//! - the postings of every leaf sum to zero, so Σ balances = 0;
//! - no member is below its floor, counting holds (`balance − held ≥ floor`);
//! - −balance(reserve) = Σ issued − Σ redeemed, and the reserve is never above zero;
//! - each signer's seq goes up by exactly one per accepted command.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::core::ids::{AccountId, Id, LedgerId, Seq, Text};
use crate::core::leaf::{Posting, assert_zero_sum};
use crate::core::money::{Floor, format_minor};
use crate::core::policy::{Currency, Event, Genesis, Payer, Policy, Rules};
use crate::core::protocol::{self, Command, VerifiedCommand};
use crate::core::rides::{self, BookArgs, RideChange, RideObject, Rides};
use crate::core::time::Timestamp;

/// The largest balance (and the most negative reserve) the ledger allows, in minor
/// units: 10,000,000,000.00, far above any village and far below `i64::MAX`.
pub const BALANCE_MINOR_MAX: i64 = 1_000_000_000_000;

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Registered, waiting for the desk: may receive money, may sign nothing.
    Pending,
    /// Approved member.
    Active,
    /// The desk's own account: signs desk commands, holds no money.
    Operator,
    /// The system account that is the other side of every issue and redemption.
    Reserve,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Operator => "operator",
            Status::Reserve => "reserve",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "pending" => Some(Status::Pending),
            "active" => Some(Status::Active),
            "operator" => Some(Status::Operator),
            "reserve" => Some(Status::Reserve),
            _ => None,
        }
    }
}

/// One account of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// The key that signs for it; none for the reserve, which signs nothing, and for
    /// custodial accounts, for which the desk signs.
    pub key: Option<[u8; 32]>,
    pub name: Option<Text>,
    pub status: Status,
    /// A resident without internet: the desk signs their commands, saying so.
    pub custodial: bool,
    pub balance: i64,
    /// Money reserved by open holds (ride bookings); `available = balance − held`.
    pub held: i64,
    /// None for the reserve and the operator, which have no floor.
    pub floor: Option<Floor>,
    pub next_seq: Seq,
}

impl Account {
    pub fn available(&self) -> i64 {
        self.balance - self.held
    }
}

/// Everything the ledger knows, derived from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    ledger: LedgerId,
    currency: Currency,
    ledger_key: [u8; 32],
    operator_key: [u8; 32],
    policy: Policy,
    rules: Rules,
    accounts: HashMap<AccountId, Account>,
    keys_in_use: HashSet<[u8; 32]>,
    rides: Rides,
    /// The number of leaves applied, genesis included: the next leaf's index.
    size: u64,
    last_accepted_at: Timestamp,
    issued: i64,
    redeemed: i64,
}

/// Why the genesis event cannot found a ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("the genesis names an invalid ledger id: {0}")]
    Ledger(String),
    #[error("the genesis {0} is not a strong Ed25519 public key (32 bytes in base64, canonical, not of small order)")]
    Key(&'static str),
    #[error("the genesis currency must have 2 decimals")]
    Decimals,
    #[error("{0}")]
    Policy(String),
}

/// The parts of a state that are stored apart from the accounts, for a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub size: u64,
    pub last_accepted_at: Timestamp,
    pub issued: i64,
    pub redeemed: i64,
}

impl State {
    /// The state after leaf 0: the operator and reserve accounts, nothing else.
    pub fn from_genesis(genesis: &Genesis, accepted_at: Timestamp) -> Result<State, GenesisError> {
        let operator_key = decode_key(&genesis.operator_key).ok_or(GenesisError::Key("operator_key"))?;
        let system = |id: AccountId, key: Option<[u8; 32]>, status| Account {
            id,
            key,
            name: None,
            status,
            custodial: false,
            balance: 0,
            held: 0,
            floor: None,
            next_seq: Seq::ZERO,
        };
        let operator = system(AccountId::operator(), Some(operator_key), Status::Operator);
        let reserve = system(AccountId::reserve(), None, Status::Reserve);
        let totals = Totals { size: 1, last_accepted_at: accepted_at, issued: 0, redeemed: 0 };
        State::restore(genesis, [operator, reserve].into_iter(), Rides::default(), totals)
    }

    /// Rebuilds a state from what the store kept: the genesis facts (with the policy
    /// in force), every account (operator and reserve included), the rides and the
    /// totals.
    pub fn restore(
        genesis: &Genesis,
        accounts: impl Iterator<Item = Account>,
        rides: Rides,
        totals: Totals,
    ) -> Result<State, GenesisError> {
        let ledger = LedgerId::parse(&genesis.ledger).map_err(|error| GenesisError::Ledger(error.to_string()))?;
        let ledger_key = decode_key(&genesis.ledger_key).ok_or(GenesisError::Key("ledger_key"))?;
        let operator_key = decode_key(&genesis.operator_key).ok_or(GenesisError::Key("operator_key"))?;
        if genesis.currency.decimals != crate::core::money::MINOR_DIGITS {
            return Err(GenesisError::Decimals);
        }
        let rules = Rules::from_policy(&genesis.policy).map_err(|error| GenesisError::Policy(error.to_string()))?;
        let accounts: HashMap<AccountId, Account> = accounts.map(|account| (account.id.clone(), account)).collect();
        let keys_in_use =
            accounts.values().filter(|account| account.id.is_member()).filter_map(|account| account.key).collect();
        let state = State {
            ledger,
            currency: genesis.currency.clone(),
            ledger_key,
            operator_key,
            policy: genesis.policy.clone(),
            rules,
            accounts,
            keys_in_use,
            rides,
            size: totals.size,
            last_accepted_at: totals.last_accepted_at,
            issued: totals.issued,
            redeemed: totals.redeemed,
        };
        state.assert_invariants();
        Ok(state)
    }

    pub fn ledger(&self) -> &LedgerId {
        &self.ledger
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }

    pub fn ledger_key(&self) -> &[u8; 32] {
        &self.ledger_key
    }

    pub fn operator_key(&self) -> &[u8; 32] {
        &self.operator_key
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn rides(&self) -> &Rides {
        &self.rides
    }

    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn totals(&self) -> Totals {
        Totals {
            size: self.size,
            last_accepted_at: self.last_accepted_at,
            issued: self.issued,
            redeemed: self.redeemed,
        }
    }

    /// Currency in circulation: what the desk owes in euros.
    pub fn circulation(&self) -> i64 {
        -self.reserve().balance
    }

    fn reserve(&self) -> &Account {
        self.accounts.get(&AccountId::reserve()).expect("the reserve account exists from genesis")
    }

    /// Checks every invariant over the whole state: O(accounts + bookings), for
    /// start-up and tests.
    pub fn assert_invariants(&self) {
        let sum: i128 = self.accounts.values().map(|account| i128::from(account.balance)).sum();
        assert_eq!(sum, 0, "the balances of all accounts sum to zero");
        for account in self.accounts.values() {
            assert_account_invariants(account);
        }
        assert_eq!(self.circulation(), self.issued - self.redeemed, "circulation = issued − redeemed");
        assert!(self.reserve().balance <= 0, "the reserve is never above zero");
        let mut held: HashMap<&AccountId, i64> = HashMap::new();
        for object in self.rides.objects() {
            if let RideObject::Booking(booking) = object {
                if booking.status.holds() {
                    for share in &booking.shares {
                        let account = &self.accounts.get_key_value(&share.account).expect("a share's account exists").0;
                        *held.entry(account).or_default() += share.amount;
                    }
                }
            }
        }
        for account in self.accounts.values() {
            assert_eq!(account.held, held.get(&account.id).copied().unwrap_or(0), "holds = open bookings: {account:?}");
        }
    }
}

/// A refusal by the state machine. Each variant says the HTTP status it becomes;
/// [`Refusal::code`] is its stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400 `wrong_ledger`.
    #[error("the command is for ledger \"{found}\", but this is ledger \"{expected}\"")]
    WrongLedger { expected: String, found: String },
    /// 400 `expired`.
    #[error("the command expired at {not_after} (not_after); it reached the ledger at {accepted_at}. Sign it again")]
    Expired { not_after: String, accepted_at: String },
    /// 404 `unknown_account`.
    #[error("there is no account \"{0}\"")]
    UnknownAccount(String),
    /// 409 `account_exists`.
    #[error("the account \"{0}\" is already registered; pick a new UUID")]
    AccountExists(String),
    /// 409 `key_in_use`.
    #[error("this key already belongs to another account; each account has its own key")]
    KeyInUse,
    /// 403 `wrong_key`.
    #[error("the command is signed with a key that is not the key registered for account \"{0}\"")]
    WrongKey(String),
    /// 409 `seq_reused`.
    #[error("seq {found} of account \"{account}\" is already used by another command; the next is {expected}")]
    SeqReused { account: String, found: u64, expected: u64 },
    /// 409 `seq_gap`.
    #[error("seq {found} of account \"{account}\" skips ahead; the next is {expected}")]
    SeqGap { account: String, found: u64, expected: u64 },
    /// 403 `not_permitted`.
    #[error("account \"{account}\" may not sign \"{kind}\": {reason}")]
    NotPermitted { account: String, kind: &'static str, reason: &'static str },
    /// 403 `account_pending`.
    #[error("account \"{0}\" is waiting for the desk's approval and can only receive money until then")]
    AccountPending(String),
    /// 401 `weak_key`: a key outside the prime-order group is never an account's key.
    #[error("this key has a small-order part and cannot be an account's key; make a new one")]
    WeakKey,
    /// 403 `not_custodial`.
    #[error("account \"{0}\" is not custodial: the desk signs only for residents it keeps accounts for")]
    NotCustodial(String),
    /// 409 `already_approved`.
    #[error("account \"{0}\" is already approved")]
    AlreadyApproved(String),
    /// 400 `not_a_member`.
    #[error("\"{0}\" is not a member account; money moves between members, and to the reserve only by redeem")]
    NotAMember(String),
    /// 400 `self_transfer`.
    #[error("a transfer must go to another account")]
    SelfTransfer,
    /// 422 `insufficient_funds`.
    #[error("account \"{account}\" has {available} available and may go down to {floor}; it cannot pay {amount}")]
    InsufficientFunds { account: String, available: String, floor: String, amount: String },
    /// 422 `floor_above_balance`.
    #[error("account \"{account}\" has {available} available, below the requested floor {floor}")]
    FloorAboveBalance { account: String, available: String, floor: String },
    /// 422 `reserve_exhausted`: credit lines let more money circulate than the desk
    /// received in euros; the desk never pays out more euros than it holds.
    #[error("the desk holds {circulation} in euros for redemptions and cannot pay out {amount}")]
    ReserveExhausted { circulation: String, amount: String },
    /// 422 `balance_limit`.
    #[error("this would take account \"{0}\" past the ledger's balance limit")]
    BalanceLimit(String),
    /// 404 `unknown_point`.
    #[error("there is no meeting point \"{0}\"")]
    UnknownPoint(String),
    /// 409 `ride_exists`.
    #[error("the id \"{0}\" is already used by an offer, a request or a booking; pick a new UUID")]
    RideExists(String),
    /// 404 `unknown_ride`.
    #[error("there is no offer, request or booking \"{0}\"")]
    UnknownRide(String),
    /// 403 `not_yours`.
    #[error("\"{0}\" belongs to someone else")]
    NotYours(String),
    /// 409 `ride_closed`.
    #[error("this ride is closed: {0}")]
    RideClosed(String),
    /// 422 `own_ride`.
    #[error("nobody rides with themselves: the driver cannot book their own ride")]
    OwnRide,
    /// 422 `not_scheduled`.
    #[error("{0}")]
    NotScheduled(String),
    /// 422 `in_the_past`.
    #[error("that time has already passed")]
    InThePast,
    /// 422 `too_far_ahead`.
    #[error("rides are offered and requested at most 90 days ahead")]
    TooFarAhead,
    /// 422 `trip_too_short`.
    #[error("the trip is {distance} by road; trips shorter than {min} are not carpooled")]
    TripTooShort { distance: String, min: String },
    /// 422 `trip_too_long`.
    #[error("the trip is {distance} by road; trips longer than {max} are not carpooled (no competing with taxis)")]
    TripTooLong { distance: String, max: String },
    /// 409 `no_seats`.
    #[error("the ride has no seats left for this request")]
    NoSeats,
    /// 422 `does_not_fit`.
    #[error(
        "the request does not fit this ride: the detour would exceed the driver's limit, or a pickup would fall outside its window"
    )]
    DoesNotFit,
    /// 409 `too_late`.
    #[error("too late: {0}")]
    TooLate(String),
    /// 409 `too_early`.
    #[error("too early: {0}")]
    TooEarly(String),
    /// 422 `too_many_trips`.
    #[error("account \"{account}\" already takes part in {max} trips that day, the most allowed")]
    TooManyTrips { account: String, max: u32 },
    /// 422 `trips_too_close`.
    #[error("account \"{account}\" has another trip less than {minutes} minutes from this one")]
    TripsTooClose { account: String, minutes: i64 },
    /// 409 `wrong_state`.
    #[error("booking \"{booking}\" is {status}: it cannot be {action}ed now")]
    WrongState { booking: String, status: &'static str, action: &'static str },
    /// 409 `not_due` (server events only): the event comes before its time.
    #[error("booking \"{0}\" has no event due at this time")]
    NotDue(String),
    /// 400 `unexpected_event`.
    #[error("a \"{0}\" event may only be leaf 0")]
    UnexpectedEvent(&'static str),
}

impl Refusal {
    /// The stable snake_case code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::WrongLedger { .. } => "wrong_ledger",
            Refusal::Expired { .. } => "expired",
            Refusal::UnknownAccount(_) => "unknown_account",
            Refusal::AccountExists(_) => "account_exists",
            Refusal::KeyInUse => "key_in_use",
            Refusal::WrongKey(_) => "wrong_key",
            Refusal::SeqReused { .. } => "seq_reused",
            Refusal::SeqGap { .. } => "seq_gap",
            Refusal::NotPermitted { .. } => "not_permitted",
            Refusal::AccountPending(_) => "account_pending",
            Refusal::WeakKey => "weak_key",
            Refusal::NotCustodial(_) => "not_custodial",
            Refusal::AlreadyApproved(_) => "already_approved",
            Refusal::NotAMember(_) => "not_a_member",
            Refusal::SelfTransfer => "self_transfer",
            Refusal::InsufficientFunds { .. } => "insufficient_funds",
            Refusal::FloorAboveBalance { .. } => "floor_above_balance",
            Refusal::ReserveExhausted { .. } => "reserve_exhausted",
            Refusal::BalanceLimit(_) => "balance_limit",
            Refusal::UnknownPoint(_) => "unknown_point",
            Refusal::RideExists(_) => "ride_exists",
            Refusal::UnknownRide(_) => "unknown_ride",
            Refusal::NotYours(_) => "not_yours",
            Refusal::RideClosed(_) => "ride_closed",
            Refusal::OwnRide => "own_ride",
            Refusal::NotScheduled(_) => "not_scheduled",
            Refusal::InThePast => "in_the_past",
            Refusal::TooFarAhead => "too_far_ahead",
            Refusal::TripTooShort { .. } => "trip_too_short",
            Refusal::TripTooLong { .. } => "trip_too_long",
            Refusal::NoSeats => "no_seats",
            Refusal::DoesNotFit => "does_not_fit",
            Refusal::TooLate(_) => "too_late",
            Refusal::TooEarly(_) => "too_early",
            Refusal::TooManyTrips { .. } => "too_many_trips",
            Refusal::TripsTooClose { .. } => "trips_too_close",
            Refusal::WrongState { .. } => "wrong_state",
            Refusal::NotDue(_) => "not_due",
            Refusal::UnexpectedEvent(_) => "unexpected_event",
        }
    }
}

/// What an accepted command did: the postings of its leaf and what it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub postings: Vec<Posting>,
    /// The accounts changed: always the signer and every posting's account (the
    /// derived tables name them by the number their row gets when saved).
    pub touched: Vec<AccountId>,
    /// (kind, id) of each ride object changed or removed.
    pub rides: Vec<(&'static str, String)>,
    pub policy_changed: bool,
}

/// The changes a command makes, decided without touching the state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effect {
    /// The account whose seq goes up: none for server events.
    pub(crate) signer: Option<AccountId>,
    pub(crate) opened: Option<Account>,
    pub(crate) approved: Option<AccountId>,
    pub(crate) floor: Option<(AccountId, Floor)>,
    pub(crate) policy: Option<Box<(Policy, Rules)>>,
    pub(crate) rides: Vec<RideChange>,
    /// Changes of held money: + when a booking holds, − when it lets go.
    pub(crate) holds: Vec<(AccountId, i64)>,
    pub(crate) postings: Vec<Posting>,
    pub(crate) issued: i64,
    pub(crate) redeemed: i64,
}

/// Applies one command, accepted at `accepted_at`, as leaf number `state.size()`.
pub fn apply(state: &mut State, command: &VerifiedCommand, accepted_at: Timestamp) -> Result<Outcome, Refusal> {
    let effect = decide(state, command, accepted_at)?;
    Ok(commit(state, effect, accepted_at))
}

/// Applies one server event (a ride settling or expiring) as the next leaf.
pub fn apply_event(state: &mut State, event: &Event, accepted_at: Timestamp) -> Result<Outcome, Refusal> {
    let mut effect = Effect::default();
    let booking = |id: &str| Id::parse("booking", id).map_err(|_| Refusal::UnknownRide(id.to_owned()));
    match event {
        Event::Genesis(_) => return Err(Refusal::UnexpectedEvent("genesis")),
        Event::RideSettle { booking: id } => rides::decide_auto_settle(state, &mut effect, &booking(id)?, accepted_at)?,
        Event::RideExpire { booking: id } => rides::decide_expire(state, &mut effect, &booking(id)?, accepted_at)?,
    }
    Ok(commit(state, effect, accepted_at))
}

/// The server events due at `now`, in order: what the server's timer appends.
pub fn due_events(state: &State, now: Timestamp) -> Vec<Event> {
    let booking = |id: &Id| id.to_string();
    state
        .rides
        .due(now)
        .map(|due| match due.status {
            rides::BookingStatus::Completed => Event::RideSettle { booking: booking(&due.id) },
            _ => Event::RideExpire { booking: booking(&due.id) },
        })
        .collect()
}

/// Decides what a command does to the state, or why it is refused. Reads only.
pub fn decide(state: &State, command: &VerifiedCommand, accepted_at: Timestamp) -> Result<Effect, Refusal> {
    let body = command.body();
    if body.ledger != state.ledger.as_str() {
        return Err(Refusal::WrongLedger { expected: state.ledger.to_string(), found: body.ledger.clone() });
    }
    check_signer(state, command)?;
    if accepted_at > body.not_after {
        return Err(Refusal::Expired { not_after: body.not_after.to_string(), accepted_at: accepted_at.to_string() });
    }
    let mut effect = Effect { signer: Some(body.account.clone()), ..Effect::default() };
    let signer = &body.account;
    let now = accepted_at;
    match &body.command {
        Command::Register { name } => {
            let status = if state.rules.approval_required { Status::Pending } else { Status::Active };
            effect.opened = Some(member(body.account.clone(), Some(*command.key()), name.clone(), status, false));
        }
        Command::Custodial { target, name } => {
            if state.accounts.contains_key(target) {
                return Err(Refusal::AccountExists(target.to_string()));
            }
            effect.opened = Some(member(target.clone(), None, name.clone(), Status::Active, true));
        }
        Command::Approve { target } => {
            let target = member_account(state, target)?;
            if target.status == Status::Active {
                return Err(Refusal::AlreadyApproved(target.id.to_string()));
            }
            effect.approved = Some(target.id.clone());
        }
        Command::CreditSet { target, floor } => {
            let target = member_account(state, target)?;
            if target.available() < floor.minor() {
                return Err(Refusal::FloorAboveBalance {
                    account: target.id.to_string(),
                    available: format_minor(target.available()),
                    floor: floor.to_string(),
                });
            }
            effect.floor = Some((target.id.clone(), *floor));
        }
        Command::Issue { to, amount, .. } => {
            let payee = member_account(state, to)?;
            let reserve = state.reserve();
            check_room(payee, amount.minor())?;
            check_room(reserve, -amount.minor())?;
            effect.postings = two_postings(&reserve.id, &payee.id, amount.minor());
            effect.issued = amount.minor();
        }
        Command::Transfer { to, amount, .. } => {
            let payer = account(state, signer)?;
            if *to == payer.id {
                return Err(Refusal::SelfTransfer);
            }
            let payee = member_account(state, to)?;
            let floor = payer.floor.map_or(0, Floor::minor);
            check_funds(payer, floor, amount.minor())?;
            check_room(payee, amount.minor())?;
            effect.postings = two_postings(&payer.id, &payee.id, amount.minor());
        }
        Command::Redeem { amount, .. } => {
            // Euros are paid only against money held: a credit line is spent in the
            // village, never cashed at the desk, so redemption counts a floor of zero.
            let payer = account(state, signer)?;
            check_funds(payer, 0, amount.minor())?;
            let circulation = state.circulation();
            if amount.minor() > circulation {
                return Err(Refusal::ReserveExhausted {
                    circulation: format_minor(circulation),
                    amount: amount.to_string(),
                });
            }
            effect.postings = two_postings(&payer.id, &AccountId::reserve(), amount.minor());
            effect.redeemed = amount.minor();
        }
        Command::PolicySet { policy } => {
            let rules = Rules::from_policy(policy).expect("the body parser checked the policy");
            if let Payer::Sponsor { account: sponsor, .. } = &rules.payer {
                member_account(state, sponsor)?;
            }
            effect.policy = Some(Box::new(((**policy).clone(), rules)));
        }
        Command::PlaceSet { point, name, location } => rides::decide_place_set(&mut effect, point, name, *location),
        Command::PlaceRemove { point } => rides::decide_place_remove(state, &mut effect, point)?,
        Command::Offer(spec) => rides::decide_offer(state, &mut effect, signer, spec, now)?,
        Command::Request(spec) => rides::decide_request(state, &mut effect, signer, spec, now)?,
        Command::Book { booking, offer, request, date } => {
            let args = BookArgs { booking, offer, request, date: *date };
            rides::decide_book(state, &mut effect, signer, args, now)?;
        }
        Command::Accept { booking } => rides::decide_accept(state, &mut effect, signer, booking, true)?,
        Command::Decline { booking } => rides::decide_accept(state, &mut effect, signer, booking, false)?,
        Command::Cancel { target, .. } => rides::decide_cancel(state, &mut effect, signer, target, now)?,
        Command::Complete { booking } => rides::decide_complete(state, &mut effect, signer, booking, now)?,
        Command::Confirm { booking } => rides::decide_confirm(state, &mut effect, signer, booking)?,
        Command::Dispute { booking, .. } => rides::decide_dispute(state, &mut effect, signer, booking, now)?,
        Command::Resolve { booking, resolution, .. } => {
            rides::decide_resolve(state, &mut effect, booking, *resolution)?
        }
    }
    Ok(effect)
}

fn member(id: AccountId, key: Option<[u8; 32]>, name: Text, status: Status, custodial: bool) -> Account {
    Account {
        id,
        key,
        name: Some(name),
        status,
        custodial,
        balance: 0,
        held: 0,
        floor: Some(Floor::ZERO),
        next_seq: Seq::ZERO,
    }
}

/// Applies a decided effect. Cannot fail: everything was checked by [`decide`].
pub fn commit(state: &mut State, effect: Effect, accepted_at: Timestamp) -> Outcome {
    assert_zero_sum(&effect.postings);
    let mut touched: Vec<AccountId> = effect.signer.iter().cloned().collect();
    if let Some(account) = effect.opened {
        assert!(!state.accounts.contains_key(&account.id), "decide checked the account is new");
        if let Some(key) = account.key {
            state.keys_in_use.insert(key);
        }
        touched.push(account.id.clone());
        state.accounts.insert(account.id.clone(), account);
    }
    if let Some(id) = effect.approved {
        state.accounts.get_mut(&id).expect("decide checked the target").status = Status::Active;
        touched.push(id);
    }
    if let Some((id, floor)) = effect.floor {
        state.accounts.get_mut(&id).expect("decide checked the target").floor = Some(floor);
        touched.push(id);
    }
    let policy_changed = effect.policy.is_some();
    if let Some(policy) = effect.policy {
        (state.policy, state.rules) = *policy;
    }
    let mut ride_keys = Vec::with_capacity(effect.rides.len());
    for change in effect.rides {
        ride_keys.push(match &change {
            RideChange::Put(object) => object.key(),
            RideChange::RemovePoint(id) => ("point", id.clone()),
        });
        state.rides.apply(change);
    }
    for (id, delta) in effect.holds {
        state.accounts.get_mut(&id).expect("decide checked every holder").held += delta;
        touched.push(id);
    }
    for posting in &effect.postings {
        let account = state.accounts.get_mut(&posting.account).expect("decide checked every posting's account");
        account.balance += posting.amount_minor;
        touched.push(posting.account.clone());
    }
    if let Some(signer) = &effect.signer {
        let signer = state.accounts.get_mut(signer).expect("decide checked the signer");
        signer.next_seq = signer.next_seq.next();
    }
    state.issued += effect.issued;
    state.redeemed += effect.redeemed;
    state.size += 1;
    state.last_accepted_at = state.last_accepted_at.max(accepted_at);
    touched.sort();
    touched.dedup();
    for id in &touched {
        assert_account_invariants(&state.accounts[id]);
    }
    assert_eq!(state.circulation(), state.issued - state.redeemed, "circulation = issued − redeemed");
    let keys: BTreeSet<(&'static str, String)> = ride_keys.into_iter().collect();
    Outcome { postings: effect.postings, touched, rides: keys.into_iter().collect(), policy_changed }
}

/// The signer exists, signed with its own key (or the desk for a custodial account),
/// is at the right seq and may sign this command.
fn check_signer(state: &State, command: &VerifiedCommand) -> Result<(), Refusal> {
    let body = command.body();
    let account = body.account.to_string();
    if let Command::Register { .. } = body.command {
        if body.by_operator {
            return Err(Refusal::NotPermitted {
                account,
                kind: "account.register",
                reason: "the desk opens custodial accounts with account.custodial",
            });
        }
        if state.accounts.contains_key(&body.account) {
            return Err(Refusal::AccountExists(account));
        }
        if body.seq != Seq::ZERO {
            return Err(Refusal::SeqGap { account, found: body.seq.value(), expected: 0 });
        }
        if state.keys_in_use.contains(command.key()) || *command.key() == state.operator_key {
            return Err(Refusal::KeyInUse);
        }
        if !prime_order(command.key()) {
            return Err(Refusal::WeakKey);
        }
        return Ok(());
    }
    let signer = state.accounts.get(&body.account).ok_or_else(|| Refusal::UnknownAccount(account.clone()))?;
    let expected_key = if body.by_operator {
        if !signer.custodial {
            return Err(Refusal::NotCustodial(account));
        }
        Some(&state.operator_key)
    } else {
        signer.key.as_ref()
    };
    if expected_key != Some(command.key()) {
        return Err(Refusal::WrongKey(account));
    }
    let (found, expected) = (body.seq.value(), signer.next_seq.value());
    if found < expected {
        return Err(Refusal::SeqReused { account, found, expected });
    }
    if found > expected {
        return Err(Refusal::SeqGap { account, found, expected });
    }
    check_permission(signer, &body.command)
}

fn check_permission(signer: &Account, command: &Command) -> Result<(), Refusal> {
    let kind = command.kind();
    let refuse = |reason| Err(Refusal::NotPermitted { account: signer.id.to_string(), kind, reason });
    let desk_only = command.is_desk_only();
    match signer.status {
        Status::Reserve => refuse("the reserve signs nothing"),
        Status::Operator if desk_only => Ok(()),
        Status::Operator => refuse("the operator holds no money and takes no rides; members pay, redeem and ride"),
        _ if desk_only => refuse("only the operator (the desk) may"),
        Status::Pending => Err(Refusal::AccountPending(signer.id.to_string())),
        Status::Active => Ok(()),
    }
}

fn account<'a>(state: &'a State, id: &AccountId) -> Result<&'a Account, Refusal> {
    state.accounts.get(id).ok_or_else(|| Refusal::UnknownAccount(id.to_string()))
}

/// A member account that exists: not the operator, not the reserve.
fn member_account<'a>(state: &'a State, id: &AccountId) -> Result<&'a Account, Refusal> {
    if !id.is_member() {
        return Err(Refusal::NotAMember(id.to_string()));
    }
    account(state, id)
}

fn check_funds(payer: &Account, floor: i64, amount: i64) -> Result<(), Refusal> {
    if payer.available() - amount < floor {
        return Err(Refusal::InsufficientFunds {
            account: payer.id.to_string(),
            available: format_minor(payer.available()),
            floor: format_minor(floor),
            amount: format_minor(amount),
        });
    }
    Ok(())
}

/// The account can take `delta` without leaving ±[`BALANCE_MINOR_MAX`].
fn check_room(account: &Account, delta: i64) -> Result<(), Refusal> {
    let after = account.balance + delta;
    if !(-BALANCE_MINOR_MAX..=BALANCE_MINOR_MAX).contains(&after) {
        return Err(Refusal::BalanceLimit(account.id.to_string()));
    }
    Ok(())
}

fn two_postings(payer: &AccountId, payee: &AccountId, amount: i64) -> Vec<Posting> {
    vec![
        Posting { account: payer.clone(), amount_minor: -amount },
        Posting { account: payee.clone(), amount_minor: amount },
    ]
}

fn assert_account_invariants(account: &Account) {
    assert!(account.held >= 0, "holds are never negative: {account:?}");
    match account.floor {
        Some(floor) => assert!(account.available() >= floor.minor(), "no member below its floor: {account:?}"),
        None => assert!(!account.id.is_member(), "every member has a floor: {account:?}"),
    }
    if account.id.is_operator() {
        assert_eq!(account.balance, 0, "the operator holds no money");
    }
}

/// A genesis key: 32 bytes, canonically encoded, a point of the prime-order group.
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let key: [u8; 32] = protocol::base64_decode(text)?.try_into().ok()?;
    (protocol::is_canonical_encoding(&key) && prime_order(&key)).then_some(key)
}

/// The key is a point of the prime-order subgroup: not of small order, and without a
/// small-order part. Such keys make every verifier agree, batch or single (a key
/// with a torsion part could pass a batch that `verify_strict` refuses). Checked once,
/// when a key is registered.
fn prime_order(key: &[u8; 32]) -> bool {
    let point = curve25519_dalek::edwards::CompressedEdwardsY(*key).decompress();
    point.is_some_and(|point| !point.is_small_order() && point.is_torsion_free())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::core::protocol::{BodyWire, CommandWire, open_envelope, sign_body};

    const LEDGER: &str = "covoit/test";
    const NOT_AFTER: &str = "2030-01-01T00:00:00Z";

    struct World {
        state: State,
        operator: SigningKey,
        now: Timestamp,
    }

    fn world(approval_required: bool) -> World {
        let operator = SigningKey::from_bytes(&[9; 32]);
        let genesis = Genesis {
            ledger: LEDGER.into(),
            currency: Currency::default(),
            ledger_key: protocol::base64_encode(SigningKey::from_bytes(&[8; 32]).verifying_key().as_bytes()),
            operator_key: protocol::base64_encode(operator.verifying_key().as_bytes()),
            policy: Policy { approval_required, ..Policy::default() },
        };
        let now = Timestamp::parse("2026-11-25T10:00:00Z").unwrap();
        World { state: State::from_genesis(&genesis, now).unwrap(), operator, now }
    }

    fn member_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn member_id(seed: u8) -> String {
        format!("00000000-0000-4000-8000-0000000000{seed:02x}")
    }

    impl World {
        fn run(&mut self, key: &SigningKey, body: BodyWire) -> Result<Outcome, Refusal> {
            let envelope = sign_body(key, &body);
            let command = open_envelope(&serde_json::to_vec(&envelope).unwrap()).expect("a valid envelope");
            let before = self.state.clone();
            let result = apply(&mut self.state, &command, self.now);
            if result.is_err() {
                assert_eq!(self.state, before, "a refusal changes nothing");
            }
            self.state.assert_invariants();
            result
        }

        fn next_seq(&self, account: &str) -> String {
            self.state.account(&AccountId::parse(account).unwrap()).map_or(0, |a| a.next_seq.value()).to_string()
        }

        fn register(&mut self, seed: u8) -> Result<Outcome, Refusal> {
            let body = BodyWire {
                ledger: LEDGER.into(),
                account: member_id(seed),
                seq: "0".into(),
                not_after: NOT_AFTER.into(),
                by: None,
                command: CommandWire::Register { name: format!("Member {seed}") },
            };
            self.run(&member_key(seed), body)
        }

        fn desk(&mut self, make: impl FnOnce(String) -> BodyWire) -> Result<Outcome, Refusal> {
            let body = make(self.next_seq("operator"));
            let operator = self.operator.clone();
            self.run(&operator, body)
        }

        fn approve(&mut self, seed: u8) -> Result<Outcome, Refusal> {
            self.desk(|seq| BodyWire {
                ledger: LEDGER.into(),
                account: "operator".into(),
                seq,
                not_after: NOT_AFTER.into(),
                by: None,
                command: CommandWire::Approve { target: member_id(seed) },
            })
        }

        fn issue(&mut self, seed: u8, amount: &str) -> Result<Outcome, Refusal> {
            self.desk(|seq| BodyWire {
                ledger: LEDGER.into(),
                account: "operator".into(),
                seq,
                not_after: NOT_AFTER.into(),
                by: None,
                command: CommandWire::Issue { to: member_id(seed), amount: amount.into(), memo: None },
            })
        }

        fn credit(&mut self, seed: u8, floor: &str) -> Result<Outcome, Refusal> {
            self.desk(|seq| BodyWire {
                ledger: LEDGER.into(),
                account: "operator".into(),
                seq,
                not_after: NOT_AFTER.into(),
                by: None,
                command: CommandWire::CreditSet { target: member_id(seed), floor: floor.into() },
            })
        }

        fn transfer(&mut self, from: u8, to: &str, amount: &str) -> Result<Outcome, Refusal> {
            let body = BodyWire {
                ledger: LEDGER.into(),
                account: member_id(from),
                seq: self.next_seq(&member_id(from)),
                not_after: NOT_AFTER.into(),
                by: None,
                command: CommandWire::Transfer {
                    to: to.into(),
                    amount: amount.into(),
                    memo: Some("boulangerie".into()),
                },
            };
            self.run(&member_key(from), body)
        }

        fn redeem(&mut self, from: u8, amount: &str) -> Result<Outcome, Refusal> {
            let body = BodyWire {
                ledger: LEDGER.into(),
                account: member_id(from),
                seq: self.next_seq(&member_id(from)),
                not_after: NOT_AFTER.into(),
                by: None,
                command: CommandWire::Redeem { amount: amount.into(), memo: None },
            };
            self.run(&member_key(from), body)
        }

        fn balance(&self, account: &str) -> i64 {
            self.state.account(&AccountId::parse(account).unwrap()).unwrap().balance
        }

        fn held(&self, seed: u8) -> i64 {
            self.state.account(&AccountId::parse(&member_id(seed)).unwrap()).unwrap().held
        }

        /// A member's command, at its next seq.
        fn member(&mut self, seed: u8, command: CommandWire) -> Result<Outcome, Refusal> {
            let body = BodyWire {
                ledger: LEDGER.into(),
                account: member_id(seed),
                seq: self.next_seq(&member_id(seed)),
                not_after: NOT_AFTER.into(),
                by: None,
                command,
            };
            self.run(&member_key(seed), body)
        }

        fn operator(&mut self, command: CommandWire) -> Result<Outcome, Refusal> {
            self.desk(|seq| BodyWire {
                ledger: LEDGER.into(),
                account: "operator".into(),
                seq,
                not_after: NOT_AFTER.into(),
                by: None,
                command,
            })
        }

        /// Applies the server events due now, as the writer would.
        fn tick(&mut self) -> Vec<Event> {
            let events = due_events(&self.state, self.now);
            for event in &events {
                apply_event(&mut self.state, event, self.now).expect("a due event applies");
                self.state.assert_invariants();
            }
            events
        }
    }

    // Rides. The world's clock is 2026-11-25 10:00 UTC (11:00 in Ayen).

    fn ride_id(n: u32) -> String {
        format!("00000000-0000-4000-9000-{n:012x}")
    }

    fn at(minutes: i64) -> String {
        Timestamp::parse("2026-11-25T10:00:00Z").unwrap().plus_ms(minutes * 60_000).to_string()
    }

    /// An 8.7 km ride from Ayen to Objat, leaving `minutes` from now.
    fn offer(n: u32, minutes: i64, seats: u32) -> CommandWire {
        CommandWire::Offer(Box::new(crate::core::protocol::OfferWire {
            offer: ride_id(n),
            origin: crate::core::protocol::PlaceWire::at("45.248", "1.327"),
            destination: crate::core::protocol::PlaceWire::at("45.264", "1.409"),
            seats,
            detour_km: None,
            departure: Some(at(minutes)),
            weekdays: None,
            time: None,
            until: None,
        }))
    }

    /// A passenger going the same way, picked up in the first half hour after `minutes`.
    fn request(n: u32, minutes: i64) -> CommandWire {
        request_between(n, minutes, ("45.248", "1.328"), ("45.264", "1.408"))
    }

    fn request_between(n: u32, minutes: i64, from: (&str, &str), to: (&str, &str)) -> CommandWire {
        CommandWire::Request(Box::new(crate::core::protocol::RequestWire {
            request: ride_id(n),
            pickup: crate::core::protocol::PlaceWire::at(from.0, from.1),
            dropoff: crate::core::protocol::PlaceWire::at(to.0, to.1),
            earliest: at(minutes),
            latest: at(minutes + 30),
            seats: 1,
        }))
    }

    fn book(booking: u32, offer: u32, request: u32) -> CommandWire {
        CommandWire::Book { booking: ride_id(booking), offer: ride_id(offer), request: ride_id(request), date: None }
    }

    /// Driver 1, passengers 2 and 3, each with 10.00.
    fn riders() -> World {
        let mut world = world(false);
        for seed in 1..=3 {
            world.register(seed).unwrap();
            world.issue(seed, "10.00").unwrap();
        }
        world
    }

    #[test]
    fn a_booking_holds_the_fare_and_confirmation_pays_the_driver() {
        let mut world = riders();
        world.member(1, offer(1, 60, 2)).unwrap();
        world.member(2, request(2, 55)).unwrap();
        assert_eq!(code(world.member(2, book(3, 1, 2))), "ok");
        // 8,463 m at 0.06 per km: 0.51, held.
        assert_eq!(world.held(2), 51);
        assert_eq!(code(world.member(2, CommandWire::Complete { booking: ride_id(3) })), "not_yours");
        assert_eq!(code(world.member(1, CommandWire::Complete { booking: ride_id(3) })), "wrong_state");
        world.member(1, CommandWire::Accept { booking: ride_id(3) }).unwrap();
        assert_eq!(code(world.member(1, CommandWire::Complete { booking: ride_id(3) })), "too_early");
        world.now = world.now.plus_ms(70 * 60_000);
        world.member(1, CommandWire::Complete { booking: ride_id(3) }).unwrap();
        let outcome = world.member(2, CommandWire::Confirm { booking: ride_id(3) }).unwrap();
        assert_eq!(outcome.postings.iter().map(|p| p.amount_minor).collect::<Vec<_>>(), [-51, 51]);
        assert_eq!((world.held(2), world.balance(&member_id(2)), world.balance(&member_id(1))), (0, 949, 1051));
        assert_eq!(code(world.member(2, CommandWire::Confirm { booking: ride_id(3) })), "wrong_state");
    }

    #[test]
    fn trips_must_be_two_to_twenty_five_km() {
        let mut world = riders();
        let short = request_between(2, 30, ("45.248", "1.328"), ("45.250", "1.330"));
        assert_eq!(code(world.member(2, short)), "trip_too_short");
        // Ayen to the far side of Brive: about 28 km by road.
        let to_brive = request_between(2, 30, ("45.248", "1.327"), ("45.13", "1.56"));
        assert_eq!(code(world.member(2, to_brive)), "trip_too_long");
        let past = request(2, -60);
        assert_eq!(code(world.member(2, past)), "in_the_past");
        let far = request(2, 91 * 24 * 60);
        assert_eq!(code(world.member(2, far)), "too_far_ahead");
    }

    #[test]
    fn at_most_four_trips_a_day_and_thirty_minutes_apart() {
        let mut world = riders();
        world.issue(2, "90.00").unwrap();
        for trip in 0..5u32 {
            let minutes = 60 + i64::from(trip) * 45;
            world.member(1, offer(10 + trip, minutes, 3)).unwrap();
            world.member(2, request(20 + trip, minutes - 5)).unwrap();
            let result = world.member(2, book(30 + trip, 10 + trip, 20 + trip));
            assert_eq!(code(result), if trip < 4 { "ok" } else { "too_many_trips" }, "trip {trip}");
        }
        // A sixth ride twenty minutes after the first: too close for passenger 3 who
        // took the first, and the driver is on the road then.
        let mut world = riders();
        world.member(1, offer(1, 60, 3)).unwrap();
        world.member(3, request(2, 55)).unwrap();
        world.member(3, book(3, 1, 2)).unwrap();
        world.register(4).unwrap();
        world.member(4, offer(4, 80, 3)).unwrap();
        world.member(3, request(5, 75)).unwrap();
        assert_eq!(code(world.member(3, book(6, 4, 5))), "trips_too_close");
        // The same ride twice for the driver is one trip: a second passenger is fine.
        world.member(2, request(7, 55)).unwrap();
        assert_eq!(code(world.member(2, book(8, 1, 7))), "ok");
    }

    #[test]
    fn seats_funds_and_self_rides() {
        let mut world = riders();
        world.member(1, offer(1, 60, 1)).unwrap();
        world.member(2, request(2, 55)).unwrap();
        world.member(3, request(3, 55)).unwrap();
        world.member(2, book(4, 1, 2)).unwrap();
        assert_eq!(code(world.member(3, book(5, 1, 3))), "no_seats");
        world.member(1, request(6, 55)).unwrap();
        assert_eq!(code(world.member(1, book(7, 1, 6))), "own_ride");
        assert_eq!(code(world.member(3, book(4, 1, 3))), "ride_exists");
        assert_eq!(code(world.member(3, book(8, 1, 2))), "not_yours");
        // Declining frees the seat and the money.
        world.member(1, CommandWire::Decline { booking: ride_id(4) }).unwrap();
        assert_eq!(world.held(2), 0);
        world.register(5).unwrap();
        world.member(5, request(9, 55)).unwrap();
        assert_eq!(code(world.member(5, book(10, 1, 9))), "insufficient_funds", "nobody books what they cannot pay");
        assert_eq!(code(world.member(3, book(11, 1, 3))), "ok");
    }

    #[test]
    fn unanswered_and_unfinished_bookings_expire_and_completed_ones_settle() {
        let mut world = riders();
        world.member(1, offer(1, 60, 3)).unwrap();
        world.member(2, request(2, 55)).unwrap();
        world.member(3, request(3, 55)).unwrap();
        world.member(2, book(4, 1, 2)).unwrap();
        world.member(3, book(5, 1, 3)).unwrap();
        world.member(1, CommandWire::Accept { booking: ride_id(5) }).unwrap();
        assert!(world.tick().is_empty());
        // At pickup time the unanswered booking expires; the accepted one waits.
        world.now = world.now.plus_ms(70 * 60_000);
        assert_eq!(world.tick(), [Event::RideExpire { booking: ride_id(4) }]);
        assert_eq!(world.held(2), 0);
        world.member(1, CommandWire::Complete { booking: ride_id(5) }).unwrap();
        world.now = world.now.plus_ms(24 * 3_600_000 - 1);
        assert!(world.tick().is_empty());
        world.now = world.now.plus_ms(1);
        assert_eq!(world.tick(), [Event::RideSettle { booking: ride_id(5) }]);
        assert_eq!((world.balance(&member_id(3)), world.balance(&member_id(1))), (949, 1051));
        // An event that is not due is refused: the auditor checks the server's timing.
        let early = Event::RideSettle { booking: ride_id(5) };
        assert_eq!(apply_event(&mut world.state, &early, world.now).map(|_| ()).unwrap_err().code(), "not_due");
    }

    #[test]
    fn a_withdrawn_offer_cancels_its_future_bookings() {
        let mut world = riders();
        world.member(1, offer(1, 60, 3)).unwrap();
        world.member(2, request(2, 55)).unwrap();
        world.member(2, book(3, 1, 2)).unwrap();
        let withdraw =
            CommandWire::Cancel { booking: None, offer: Some(ride_id(1)), request: None, date: None, memo: None };
        world.member(1, withdraw).unwrap();
        assert_eq!(world.held(2), 0);
        assert_eq!(
            world.state.rides().booking(&Id::parse("b", &ride_id(3)).unwrap()).unwrap().status.as_str(),
            "cancelled"
        );
        world.member(3, request(4, 55)).unwrap();
        assert_eq!(code(world.member(3, book(5, 1, 4))), "ride_closed");
    }

    #[test]
    fn a_sponsor_pays_up_to_its_caps_and_a_new_rate_applies_to_new_bookings() {
        let mut world = riders();
        world.register(7).unwrap();
        world.issue(7, "100.00").unwrap();
        let sponsored = Policy {
            approval_required: false,
            payer: "sponsor".into(),
            sponsor: Some(member_id(7)),
            sponsor_cap_trip: Some("0.30".into()),
            sponsor_cap_day: Some("0.50".into()),
            sponsor_cap_month: Some("10.00".into()),
            ..Policy::default()
        };
        world.operator(CommandWire::PolicySet { policy: Box::new(sponsored) }).unwrap();
        world.member(1, offer(1, 60, 3)).unwrap();
        world.member(1, offer(2, 180, 3)).unwrap();
        world.member(2, request(3, 55)).unwrap();
        world.member(2, request(4, 175)).unwrap();
        world.member(2, book(5, 1, 3)).unwrap();
        world.member(2, book(6, 2, 4)).unwrap();
        let shares = |world: &World, n: u32| -> Vec<(bool, i64)> {
            let booking = world.state.rides().booking(&Id::parse("b", &ride_id(n)).unwrap()).unwrap().clone();
            booking.shares.iter().map(|share| (share.sponsor, share.amount)).collect()
        };
        // 0.51: the sponsor pays its trip cap, 0.30; then what is left of its day cap.
        assert_eq!(shares(&world, 5), [(true, 30), (false, 21)]);
        assert_eq!(shares(&world, 6), [(true, 20), (false, 31)]);
        assert_eq!((world.held(7), world.held(2)), (50, 52));
        // A new rate applies to bookings made after it, not to those before.
        let dearer = Policy { fare_per_km: "0.10".into(), ..Policy::default() };
        world.operator(CommandWire::PolicySet { policy: Box::new(dearer) }).unwrap();
        world.member(3, request(7, 55)).unwrap();
        world.member(3, book(8, 1, 7)).unwrap();
        assert_eq!(shares(&world, 8), [(false, 85)]);
        assert_eq!(shares(&world, 5), [(true, 30), (false, 21)]);
        let unknown = Policy { payer: "sponsor".into(), sponsor: Some(member_id(77)), ..sponsored_caps() };
        assert_eq!(code(world.operator(CommandWire::PolicySet { policy: Box::new(unknown) })), "unknown_account");
    }

    #[test]
    fn a_free_ride_settles_without_moving_money_and_a_sponsor_pays_its_own_rides() {
        let mut world = riders();
        let free = Policy { approval_required: false, fare_per_km: "0".into(), ..Policy::default() };
        world.operator(CommandWire::PolicySet { policy: Box::new(free) }).unwrap();
        world.member(1, offer(1, 60, 3)).unwrap();
        world.member(2, request(2, 55)).unwrap();
        world.member(2, book(3, 1, 2)).unwrap();
        world.member(1, CommandWire::Accept { booking: ride_id(3) }).unwrap();
        world.now = world.now.plus_ms(70 * 60_000);
        world.member(1, CommandWire::Complete { booking: ride_id(3) }).unwrap();
        assert_eq!(world.member(2, CommandWire::Confirm { booking: ride_id(3) }).unwrap().postings, []);
        // A sponsor booking a ride for itself holds one share, checked once.
        let mut world = riders();
        let sponsored = Policy {
            approval_required: false,
            payer: "sponsor".into(),
            sponsor: Some(member_id(2)),
            ..sponsored_caps()
        };
        world.operator(CommandWire::PolicySet { policy: Box::new(sponsored) }).unwrap();
        world.credit(2, "0").unwrap();
        world.member(1, offer(1, 60, 3)).unwrap();
        world.member(2, request(2, 55)).unwrap();
        world.member(2, book(3, 1, 2)).unwrap();
        let booking = world.state.rides().booking(&Id::parse("b", &ride_id(3)).unwrap()).unwrap().clone();
        assert_eq!(booking.shares.len(), 1);
        assert_eq!(world.held(2), 51);
    }

    #[test]
    fn only_keys_of_the_prime_order_group_are_registered() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let key = member_key(3).verifying_key();
        assert!(prime_order(key.as_bytes()));
        let point = curve25519_dalek::edwards::CompressedEdwardsY(*key.as_bytes()).decompress().unwrap();
        let mixed = (point + EIGHT_TORSION[1]).compress().to_bytes();
        assert!(!prime_order(&mixed), "a key with a torsion part");
        assert!(!prime_order(&EIGHT_TORSION[1].compress().to_bytes()), "a small-order key");
    }

    fn sponsored_caps() -> Policy {
        Policy {
            sponsor_cap_trip: Some("1".into()),
            sponsor_cap_day: Some("1".into()),
            sponsor_cap_month: Some("1".into()),
            ..Policy::default()
        }
    }

    #[test]
    fn the_desk_signs_only_for_custodial_accounts_and_says_so() {
        let mut world = riders();
        world.operator(CommandWire::Custodial { target: member_id(40), name: "Claire".into() }).unwrap();
        world.issue(40, "5.00").unwrap();
        let by_desk = |world: &World, account: String| BodyWire {
            ledger: LEDGER.into(),
            account: account.clone(),
            seq: world.next_seq(&account),
            not_after: NOT_AFTER.into(),
            by: Some("operator".into()),
            command: CommandWire::Transfer { to: member_id(1), amount: "1.00".into(), memo: None },
        };
        let operator = world.operator.clone();
        let body = by_desk(&world, member_id(40));
        assert_eq!(code(world.run(&operator, body)), "ok");
        let body = by_desk(&world, member_id(2));
        assert_eq!(code(world.run(&operator, body)), "not_custodial");
        // Nobody else signs for a custodial account, even saying "by operator".
        let body = by_desk(&world, member_id(40));
        assert_eq!(code(world.run(&member_key(2), body)), "wrong_key");
        let mut plain = by_desk(&world, member_id(40));
        plain.by = None;
        assert_eq!(code(world.run(&operator, plain)), "wrong_key");
    }

    fn code(result: Result<Outcome, Refusal>) -> &'static str {
        result.map_or_else(|refusal| refusal.code(), |_| "ok")
    }

    #[test]
    fn issue_transfer_redeem() {
        let mut world = world(true);
        assert_eq!(code(world.register(1)), "ok");
        assert_eq!(code(world.register(2)), "ok");
        assert_eq!(code(world.approve(1)), "ok");
        assert_eq!(code(world.approve(2)), "ok");
        let outcome = world.issue(1, "20.00").unwrap();
        assert_eq!(outcome.postings[0], Posting { account: AccountId::reserve(), amount_minor: -2000 });
        assert_eq!(code(world.transfer(1, &member_id(2), "3.50")), "ok");
        assert_eq!(code(world.redeem(2, "1.50")), "ok");
        assert_eq!(world.balance(&member_id(1)), 1650);
        assert_eq!(world.balance(&member_id(2)), 200);
        assert_eq!(world.balance("reserve"), -1850);
        assert_eq!(world.state.circulation(), 1850);
        assert_eq!(world.state.size(), 8);
    }

    #[test]
    fn refusals() {
        let mut world = world(true);
        world.register(1).unwrap();
        world.register(2).unwrap();
        assert_eq!(code(world.register(1)), "account_exists");
        assert_eq!(code(world.transfer(1, &member_id(2), "1.00")), "account_pending");
        assert_eq!(code(world.issue(1, "5.00")), "ok", "a pending account can receive money");
        world.approve(1).unwrap();
        assert_eq!(code(world.approve(1)), "already_approved");
        assert_eq!(code(world.transfer(1, &member_id(2), "5.01")), "insufficient_funds");
        assert_eq!(code(world.transfer(1, &member_id(1), "1.00")), "self_transfer");
        assert_eq!(code(world.transfer(1, "reserve", "1.00")), "not_a_member");
        assert_eq!(code(world.transfer(1, "operator", "1.00")), "not_a_member");
        assert_eq!(code(world.transfer(1, &member_id(7), "1.00")), "unknown_account");
        assert_eq!(code(world.issue(7, "1.00")), "unknown_account");
        assert_eq!(code(world.approve(7)), "unknown_account");
        // A member trying the desk's commands.
        let body = BodyWire {
            ledger: LEDGER.into(),
            account: member_id(1),
            seq: world.next_seq(&member_id(1)),
            not_after: NOT_AFTER.into(),
            by: None,
            command: CommandWire::Issue { to: member_id(1), amount: "100.00".into(), memo: None },
        };
        assert_eq!(code(world.run(&member_key(1), body)), "not_permitted");
        // The operator trying to pay.
        let body = BodyWire {
            ledger: LEDGER.into(),
            account: "operator".into(),
            seq: world.next_seq("operator"),
            not_after: NOT_AFTER.into(),
            by: None,
            command: CommandWire::Transfer { to: member_id(1), amount: "1.00".into(), memo: None },
        };
        let operator = world.operator.clone();
        assert_eq!(code(world.run(&operator, body)), "not_permitted");
    }

    #[test]
    fn keys_seqs_ledgers_and_time() {
        let mut world = world(false);
        world.register(1).unwrap();
        world.register(2).unwrap();
        world.issue(1, "10.00").unwrap();
        let transfer = |seq: &str, ledger: &str, not_after: &str| BodyWire {
            ledger: ledger.into(),
            account: member_id(1),
            seq: seq.into(),
            not_after: not_after.into(),
            by: None,
            command: CommandWire::Transfer { to: member_id(2), amount: "1.00".into(), memo: None },
        };
        assert_eq!(code(world.run(&member_key(2), transfer("1", LEDGER, NOT_AFTER))), "wrong_key");
        assert_eq!(code(world.run(&member_key(1), transfer("0", LEDGER, NOT_AFTER))), "seq_reused");
        assert_eq!(code(world.run(&member_key(1), transfer("2", LEDGER, NOT_AFTER))), "seq_gap");
        assert_eq!(code(world.run(&member_key(1), transfer("1", "covoit/other", NOT_AFTER))), "wrong_ledger");
        let past = "2026-11-25T09:59:59Z";
        assert_eq!(code(world.run(&member_key(1), transfer("1", LEDGER, past))), "expired");
        let now = "2026-11-25T10:00:00Z";
        assert_eq!(code(world.run(&member_key(1), transfer("1", LEDGER, now))), "ok", "not_after is inclusive");
        // The same key cannot open a second account, nor can the operator's.
        let register = |account: String| BodyWire {
            ledger: LEDGER.into(),
            account,
            seq: "0".into(),
            not_after: NOT_AFTER.into(),
            by: None,
            command: CommandWire::Register { name: "Twice".into() },
        };
        assert_eq!(code(world.run(&member_key(1), register(member_id(9)))), "key_in_use");
        let operator = world.operator.clone();
        assert_eq!(code(world.run(&operator, register(member_id(9)))), "key_in_use");
        let mut late = register(member_id(9));
        late.seq = "1".into();
        assert_eq!(code(world.run(&member_key(9), late)), "seq_gap");
    }

    #[test]
    fn floors_and_credit_lines() {
        let mut world = world(false);
        world.register(1).unwrap();
        world.register(2).unwrap();
        assert_eq!(code(world.credit(1, "-20.00")), "ok");
        assert_eq!(code(world.transfer(1, &member_id(2), "20.00")), "ok", "down to the floor");
        assert_eq!(world.balance(&member_id(1)), -2000);
        assert_eq!(code(world.transfer(1, &member_id(2), "0.01")), "insufficient_funds");
        assert_eq!(code(world.credit(1, "-19.99")), "floor_above_balance");
        assert_eq!(code(world.credit(1, "0")), "floor_above_balance");
        // Money created by a credit line is spent in the village; the desk only pays
        // out the euros it received.
        assert_eq!(code(world.redeem(2, "20.00")), "reserve_exhausted");
        world.issue(1, "25.00").unwrap();
        assert_eq!(code(world.redeem(2, "20.00")), "ok", "received money can be redeemed");
        // A credit line is never cashed at the desk.
        assert_eq!(code(world.redeem(1, "5.01")), "insufficient_funds");
        assert_eq!(code(world.redeem(1, "5.00")), "ok");
        assert_eq!(world.state.circulation(), 0);
    }

    #[test]
    fn the_balance_limit_holds() {
        let mut world = world(false);
        world.register(1).unwrap();
        for _ in 0..(BALANCE_MINOR_MAX / 100_000_000) {
            world.issue(1, "1000000.00").unwrap();
        }
        assert_eq!(code(world.issue(1, "0.01")), "balance_limit");
    }
}
