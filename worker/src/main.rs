//! `molt_worker`: runs exported entries for molt clients.

mod cancel;
mod entries;

fn main() {}
