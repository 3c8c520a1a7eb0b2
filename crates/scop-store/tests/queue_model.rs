//! Model-based test of the queue state machine: random operation sequences
//! run against the store (in-memory SQLite) and a plain model side by side.
//! Each recipient ends delivered or failed at most once and never returns to
//! pending; a message leaves the queue exactly when nothing is pending; `due`
//! lists exactly the pending recipients whose time has come, with their
//! DSN parameters; a recipient is marked as delay-notified at most once,
//! and only then is the delay report queued.

use std::collections::BTreeMap;

use proptest::prelude::*;
use scop_store::{
    DsnParams, MessageId, NewMessage, Notify, RecipientDsn, RecipientState, Store, StoreError,
};

#[derive(Debug, Clone)]
enum Op {
    Enqueue(usize, u8),
    DelayReport(usize, usize),
    Deliver(usize, usize),
    Defer(usize, usize, i64),
    Fail(usize, usize),
    Retry(usize),
    Delete(usize),
    Advance(i64),
    Lease(usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..4, any::<u8>()).prop_map(|(n, seed)| Op::Enqueue(n, seed)),
        (0usize..6, 0usize..4).prop_map(|(m, r)| Op::DelayReport(m, r)),
        (0usize..6, 0usize..4).prop_map(|(m, r)| Op::Deliver(m, r)),
        (0usize..6, 0usize..4, 1i64..100).prop_map(|(m, r, d)| Op::Defer(m, r, d)),
        (0usize..6, 0usize..4).prop_map(|(m, r)| Op::Fail(m, r)),
        (0usize..6).prop_map(Op::Retry),
        (0usize..6).prop_map(Op::Delete),
        (1i64..150).prop_map(Op::Advance),
        (0usize..6, 1i64..50).prop_map(|(m, d)| Op::Lease(m, d)),
    ]
}

#[derive(Debug, Clone)]
struct Rcpt {
    state: RecipientState,
    next: i64,
    notify: Option<Notify>,
    notified: bool,
}

/// The NOTIFY of recipient `i` of a message enqueued with `seed`.
fn notify_for(seed: u8, i: usize) -> Option<Notify> {
    match (seed >> (2 * i)) & 3 {
        0 => None,
        1 => Some(Notify::Never),
        2 => Some(Notify::On {
            success: false,
            failure: true,
            delay: true,
        }),
        _ => Some(Notify::On {
            success: true,
            failure: false,
            delay: false,
        }),
    }
}

fn report() -> NewMessage {
    NewMessage {
        sender: String::new(),
        recipients: vec!["s@a.test".into()],
        body: b"report".to_vec(),
        lifetime_secs: 10_000,
        dsn: DsnParams::default(),
    }
}

fn pending(now: i64, notify: Option<Notify>) -> Rcpt {
    Rcpt {
        state: RecipientState::Pending,
        next: now,
        notify,
        notified: false,
    }
}

#[derive(Debug, Default)]
struct Model {
    /// message id -> recipients (by address); absent once nothing is pending
    queue: BTreeMap<MessageId, BTreeMap<String, Rcpt>>,
    lease: BTreeMap<MessageId, i64>,
    ids: Vec<MessageId>,
}

fn rcpt(i: usize) -> String {
    format!("r{i}@ext.test")
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let mut model = Model::default();
    let mut now = 1000i64;
    for op in ops {
        match op {
            Op::Enqueue(n, seed) => {
                let msg = NewMessage {
                    sender: "s@a.test".into(),
                    recipients: (0..n).map(rcpt).collect(),
                    body: b"x".to_vec(),
                    lifetime_secs: 10_000,
                    dsn: DsnParams {
                        recipients: (0..n)
                            .map(|i| RecipientDsn {
                                notify: notify_for(seed, i),
                                orcpt: None,
                            })
                            .collect(),
                        ..DsnParams::default()
                    },
                };
                let id = store.enqueue(&msg, now).await.unwrap();
                let rcpts = (0..n)
                    .map(|i| (rcpt(i), pending(now, notify_for(seed, i))))
                    .collect();
                model.queue.insert(id, rcpts);
                model.ids.push(id);
            }
            Op::DelayReport(m, r) => {
                let Some(&id) = model.ids.get(m) else {
                    continue;
                };
                let got = store
                    .enqueue_delay_report(id, &[rcpt(r)], &report(), now)
                    .await
                    .unwrap();
                let entry = model.queue.get_mut(&id).and_then(|rs| rs.get_mut(&rcpt(r)));
                match entry {
                    Some(rc) if rc.state == RecipientState::Pending && !rc.notified => {
                        rc.notified = true;
                        let Some(report_id) = got else {
                            return Err(TestCaseError::fail("no delay report queued"));
                        };
                        model.queue.insert(
                            report_id,
                            BTreeMap::from([("s@a.test".to_string(), pending(now, None))]),
                        );
                        model.ids.push(report_id);
                    }
                    _ => prop_assert_eq!(got, None),
                }
            }
            Op::Deliver(m, r) | Op::Fail(m, r) | Op::Defer(m, r, _) => {
                let Some(&id) = model.ids.get(m) else {
                    continue;
                };
                let address = rcpt(r);
                let result = match op {
                    Op::Deliver(..) => store.record_delivered(id, &address, now, "250").await,
                    Op::Fail(..) => store.record_failed(id, &address, now, "550").await,
                    Op::Defer(_, _, d) => {
                        store
                            .record_deferred(id, &address, now, now + d, "451")
                            .await
                    }
                    _ => unreachable!(),
                };
                let entry = model.queue.get_mut(&id).and_then(|rs| rs.get_mut(&address));
                match entry {
                    None => prop_assert!(
                        matches!(result, Err(StoreError::NotFound { .. })),
                        "{:?}",
                        result
                    ),
                    Some(rc) if rc.state != RecipientState::Pending => {
                        prop_assert!(
                            matches!(result, Err(StoreError::NotPending { .. })),
                            "{:?}",
                            result
                        )
                    }
                    Some(rc) => {
                        prop_assert!(result.is_ok(), "{:?}", result);
                        match op {
                            Op::Deliver(..) => rc.state = RecipientState::Delivered,
                            Op::Fail(..) => rc.state = RecipientState::Failed,
                            Op::Defer(_, _, d) => rc.next = now + d,
                            _ => unreachable!(),
                        }
                    }
                }
                if let Some(rs) = model.queue.get(&id)
                    && rs.values().all(|rc| rc.state != RecipientState::Pending)
                {
                    model.queue.remove(&id);
                }
            }
            Op::Retry(m) => {
                let Some(&id) = model.ids.get(m) else {
                    continue;
                };
                let got = store.retry_now(id, now).await.unwrap();
                prop_assert_eq!(got, model.queue.contains_key(&id));
                if let Some(rs) = model.queue.get_mut(&id) {
                    for rc in rs
                        .values_mut()
                        .filter(|rc| rc.state == RecipientState::Pending)
                    {
                        rc.next = now;
                    }
                }
            }
            Op::Delete(m) => {
                let Some(&id) = model.ids.get(m) else {
                    continue;
                };
                let got = store.delete_message(id, now).await.unwrap();
                prop_assert_eq!(got, model.queue.remove(&id).is_some());
            }
            Op::Advance(d) => now += d,
            Op::Lease(m, d) => {
                let Some(&id) = model.ids.get(m) else {
                    continue;
                };
                let got = store.lease(id, now, now + d, "relay-a").await.unwrap();
                let free = model.lease.get(&id).is_none_or(|&until| until <= now);
                let want = model.queue.contains_key(&id) && free;
                prop_assert_eq!(got, want);
                if want {
                    model.lease.insert(id, now + d);
                }
            }
        }
        // The queue listing matches the model.
        let listed = store.list_queue().await.unwrap();
        prop_assert_eq!(
            listed.iter().map(|e| e.id).collect::<Vec<_>>(),
            model.queue.keys().copied().collect::<Vec<_>>()
        );
        for e in &listed {
            let rs = &model.queue[&e.id];
            for r in &e.recipients {
                prop_assert_eq!(r.state, rs[&r.rcpt].state);
                prop_assert_eq!(r.delay_notified, rs[&r.rcpt].notified);
                if r.state == RecipientState::Pending {
                    prop_assert_eq!(r.next_attempt, rs[&r.rcpt].next);
                }
            }
        }
        // `due` lists exactly the unleased messages' due pending recipients.
        let due = store.due(now, 100).await.unwrap();
        type Due = Vec<(MessageId, Vec<(String, Option<Notify>, bool)>)>;
        let want: Due = model
            .queue
            .iter()
            .filter(|(id, _)| model.lease.get(id).is_none_or(|&until| until <= now))
            .map(|(id, rs)| {
                let mut p: Vec<_> = rs
                    .iter()
                    .filter(|(_, rc)| rc.state == RecipientState::Pending && rc.next <= now)
                    .map(|(a, rc)| (a.clone(), rc.notify, rc.notified))
                    .collect();
                p.sort_by(|a, b| a.0.cmp(&b.0));
                (*id, p)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let got: Due = due
            .iter()
            .map(|m| {
                let mut p: Vec<_> = m
                    .pending
                    .iter()
                    .map(|r| (r.rcpt.clone(), r.dsn.notify, r.delay_notified))
                    .collect();
                p.sort_by(|a, b| a.0.cmp(&b.0));
                (m.id, p)
            })
            .collect();
        prop_assert_eq!(got, want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn queue_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
